"""What the Redis store adds to the contract (tests/stores/test_contract.py
runs that against it too): URLs and namespaces, the key layout that lets it
run on Redis Cluster, the crash windows between its cross-slot steps, and a
server that restarts. Everything talks to a real redis-server."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot
from servers import start_redis

from tidal.exceptions import ConfigError, StoreError
from tidal.stores import NewOp, from_url
from tidal.stores.redis import RedisStore

C = "Comp"


@pytest.fixture(params=["one_server", "single_slot"])
def store(request: pytest.FixtureRequest, redis_url: str) -> Iterator[RedisStore]:
    """The store as it runs on one server, and as it runs on a cluster
    (every script within one hash slot), on the same real redis-server."""
    s = RedisStore.from_url(redis_url + ("&single_slot=1" if request.param == "single_slot" else ""))
    assert s.single_slot == (request.param == "single_slot")
    yield s
    s.close()


@pytest.fixture
def two_step(redis_url: str) -> Iterator[RedisStore]:
    """The store in its cluster mode, whose enqueue and commit take two steps."""
    s = RedisStore.from_url(redis_url + "&single_slot=1")
    yield s
    s.close()


def keys_of(store: RedisStore) -> list[bytes]:
    return sorted(store.client.scan_iter(match=f"*{store.namespace}*", count=1000))


def ready(store: RedisStore, component: str = C) -> list[str]:
    return [m.decode() for m in store.client.zrange(store.keys.of_component("ready", component), 0, -1)]


def drain(store: RedisStore, component: str = C) -> list[tuple[str, list[bytes]]]:
    out = []
    while (held := store.claim([component], "w", 30, 100)) is not None:
        out.append((held.instance, [op.payload for op in held.ops]))
        store.commit(held.component, held.instance, {}, claim=held, done=held.op_ids)
    return out


# -- URLs -----------------------------------------------------------------------------


def test_from_url_picks_the_redis_store_and_its_namespace(redis_url: str) -> None:
    store = from_url(redis_url)
    try:
        assert isinstance(store, RedisStore) and store.shared
        assert store.namespace == redis_url.split("namespace=")[1]
        assert store.url == redis_url  # other processes reopen the store from it
    finally:
        store.close()


def test_namespaces_share_a_server_without_seeing_each_other(redis_url: str) -> None:
    mine = RedisStore.from_url(redis_url)
    theirs = RedisStore.from_url(redis_url + "_other")
    try:
        mine.create_instance(C, "i1", {"a": b"mine"})
        mine.enqueue(C, "i1", "f", b"x")
        mine.cache_set(b"k", b"mine", 60)
        assert theirs.get_version(C, "i1") is None
        assert theirs.list_instances(C) == []
        assert theirs.claim([C], "w", 30, 10) is None
        assert theirs.cache_get(b"k") is None
        assert theirs.enqueue(C, "i1", "f", b"y") == 1  # ids are per namespace too
    finally:
        theirs.client.delete(*keys_of(theirs))
        mine.close()
        theirs.close()


def test_the_password_never_shows_in_repr_or_errors() -> None:
    store = RedisStore.from_url("redis://:s3cret@127.0.0.1:1/0?socket_connect_timeout=0.2")
    try:
        assert "s3cret" not in repr(store)
        with pytest.raises(StoreError) as err:
            store.get_version(C, "i1")
        assert "s3cret" not in str(err.value) and "127.0.0.1:1" in str(err.value)
    finally:
        store.close()


def test_bad_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="namespace"):
        from_url("redis://127.0.0.1:6379/0?namespace=")
    with pytest.raises(ConfigError, match="bad Redis store URL"):
        from_url("redis://127.0.0.1:6379/0?socket_timeout=soon")


def test_rediss_is_registered() -> None:
    from tidal.stores import SCHEMES

    assert SCHEMES["rediss"] == SCHEMES["redis"] == ("tidal.stores.redis", "RedisStore", "redis")


def test_without_redis_py_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "tidal.stores.redis" or m.startswith("tidal.stores.redis.")]:
        monkeypatch.delitem(sys.modules, name)  # the package and its modules: each imports redis
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'tidal\[redis\]'"):
        from_url("redis://127.0.0.1:6379/0")


def test_a_closed_store_says_so(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_version(C, "i1")


# -- layout -----------------------------------------------------------------------------


def test_keys_of_an_instance_share_a_slot_and_global_keys_share_another(store: RedisStore) -> None:
    """What makes Redis Cluster work: no script touches two slots."""
    for inst in ("i1", "i2"):
        store.create_instance(C, inst, {"a": b"A"})
    store.enqueue_many([NewOp(C, "i1", "f", b"1", dedupe="d1"), NewOp(C, "i1", "g", b"2")])
    held = store.claim([C], "w", 30, 1)
    assert held is not None
    store.commit(C, "i1", {"b": b"B"}, deleted=["a"], claim=held, failed=[])
    store.enqueue(C, "i2", "f", b"3")
    held = store.claim([C], "w", 30, 10)
    assert held is not None
    store.cache_set(b"some cache key", b"v", 60)

    slots: dict[str, set[int]] = {}
    for key in keys_of(store):
        text = key.decode()
        group = text[: text.index("}") + 1] if text.startswith("{") else "cache"
        slots.setdefault(group, set()).add(key_slot(key))
    ns = store.namespace
    assert set(slots) == {f"{{{ns}}}", f"{{{ns}:{C}:i1}}", f"{{{ns}:{C}:i2}}", "cache"}
    assert all(len(s) == 1 for s in slots.values()), slots
    assert slots["cache"] != slots[f"{{{ns}}}"]  # the cache spreads over the cluster
    # Per-key state and versions: the commit wrote one key and one tombstone.
    tag = store.keys.tag(C, "i1")
    assert store.client.zrange(tag + ":vers", 0, -1, withscores=True) == [(b"a", 2.0), (b"b", 2.0)]
    assert store.client.hgetall(tag + ":vals") == {b"b": b"B"}


def test_names_with_separators_and_braces_do_not_collide(store: RedisStore) -> None:
    store.create_instance("a:b", "c", {"v": b"1"})
    store.create_instance("a", "b:c", {"v": b"2"})
    store.create_instance("x", "{y}", {"v": b"3"})
    store.enqueue("a:b", "c", "f", b"p")
    assert store.pending("a", "b:c") == 0
    assert store.read_state("a", "b:c").changed == {"v": b"2"}  # type: ignore[union-attr]
    assert store.read_state("a:b", "c").changed == {"v": b"1"}  # type: ignore[union-attr]
    assert store.list_instances("x") == ["{y}"]
    assert drain(store, "a:b") == [("c", [b"p"])]


def test_get_version_is_at_most_one_hget(store: RedisStore) -> None:
    """One HGET, then none while the version stays (tests/stores/test_redis_fast.py)."""
    store.create_instance(C, "i1", {"a": b"A"})

    def calls() -> dict[str, int]:
        stats = store.client.info("commandstats")
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("hget", "evalsha", "eval")}

    before = calls()
    for _ in range(10):
        assert store.get_version(C, "i1") == 1
    after = calls()
    assert {k: after[k] - before[k] for k in before} == {"hget": 1, "evalsha": 0, "eval": 0}


# -- the steps between slots ------------------------------------------------------------


def _allocate_only(store: RedisStore, op: NewOp) -> int:
    """The first half of an enqueue (as a process killed before its push leaves it)."""
    owner = f"{op.component}:{op.instance}"
    args = [store.keys.global_tag, 1, op.component, op.instance, op.dedupe or "", round(op.dedupe_ttl * 1000), owner]
    return int(store.scripts.global_enqueue(keys=[store.keys.ids], args=args)[0])


def test_a_dedupe_key_taken_by_a_process_killed_before_its_push_is_still_usable(store: RedisStore) -> None:
    store.create_instance(C, "i1", {})
    op = NewOp(C, "i1", "f", b"trigger", dedupe="chg:1")
    lost = _allocate_only(store, op)
    assert lost > 0 and store.pending(C, "i1") == 0
    # The change is handed over again: it is queued now, once.
    again = store.enqueue_many([op])[0]
    assert again is not None and again > lost
    assert store.enqueue_many([op]) == [None]
    # ...and the key still belongs to i1 alone.
    assert store.enqueue_many([NewOp(C, "i2", "f", b"x", dedupe="chg:1")]) == [None]
    assert drain(store) == [("i1", [b"trigger"])]
    assert store.enqueue_many([op]) == [None]
    assert ready(store) == []
    # The instance's record of used keys goes away with its last key.
    assert 0 < store.client.pttl(store.keys.tag(C, "i1") + ":dd") <= op.dedupe_ttl * 1000


def test_an_allocation_whose_push_never_came_is_fenced_and_forgotten(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create_instance(C, "i1", {})
    lost = _allocate_only(store, NewOp(C, "i1", "f", b"x"))
    assert ready(store) == ["i1"]
    # Young: its push may still be on its way, so it stays in the index.
    assert store.claim([C], "w", 30, 10) is None
    assert ready(store) == ["i1"]
    monkeypatch.setattr("tidal.stores.redis.one_server.FENCE_AFTER_MS", -1)
    monkeypatch.setattr("tidal.stores.redis.two_step.FENCE_AFTER_MS", -1)
    assert store.claim([C], "w", 30, 10) is None
    assert ready(store) == []
    # Were the push to arrive after all, it is refused: nothing would be
    # queued where no claim looks.
    t = store.keys.tag(C, "i1")
    late = store.scripts.instance_push(
        keys=[t + ":m", t + ":q", t + ":flows", t + ":dd"], args=[t, 1, lost, "f", b"x", "", 0]
    )
    assert late == [-1] and store.pending(C, "i1") == 0
    # A new enqueue is not affected.
    new = store.enqueue(C, "i1", "f", b"y")
    assert new > lost and drain(store) == [("i1", [b"y"])]


def test_a_push_overtaken_by_a_newer_one_gets_fresh_ids_and_order_holds(store: RedisStore) -> None:
    store.create_instance(C, "i1", {})
    stale = _allocate_only(store, NewOp(C, "i1", "f", b"old"))
    newer = store.enqueue(C, "i1", "f", b"newer")
    assert newer > stale
    t = store.keys.tag(C, "i1")
    refused = store.scripts.instance_push(
        keys=[t + ":m", t + ":q", t + ":flows", t + ":dd"], args=[t, 1, stale, "f", b"old", "", 0]
    )
    assert refused == [-1]
    held = store.claim([C], "w", 30, 10)
    assert held is not None and held.op_ids == (newer,)


def test_concurrent_enqueuers_keep_each_instance_in_id_order(store: RedisStore) -> None:
    store.create_instance(C, "i1", {})
    store.create_instance(C, "i2", {})
    ids: dict[int, list[int]] = {}

    def enqueuer(who: int) -> None:
        mine = ids.setdefault(who, [])
        for n in range(100):
            for inst in ("i1", "i2"):
                mine.append(store.enqueue(C, inst, "f", f"{who}:{n}".encode()))

    threads = [threading.Thread(target=enqueuer, args=(w,)) for w in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    every = [i for mine in ids.values() for i in mine]
    assert len(set(every)) == 800
    assert all(mine == sorted(mine) for mine in ids.values())
    for _ in range(2):
        held = store.claim([C], "w", 30, 1000)
        assert held is not None and len(held.ops) == 400
        assert list(held.op_ids) == sorted(held.op_ids)
        for who in range(4):
            mine = [op.payload for op in held.ops if op.payload.startswith(f"{who}:".encode())]
            assert mine == [f"{who}:{n}".encode() for n in range(100)]
        store.commit(C, held.instance, {}, claim=held, done=held.op_ids)
    assert ready(store) == []


def test_concurrent_workers_never_share_an_instance(store: RedisStore) -> None:
    instances = [f"i{k}" for k in range(6)]
    for inst in instances:
        store.create_instance(C, inst, {"n": b"0"})
        for _ in range(40):
            store.enqueue(C, inst, "f", b"x")
    holders: dict[str, int] = {}
    lock = threading.Lock()
    clash: list[str] = []

    def worker() -> None:
        while (held := store.claim([C], "w", 30, 7)) is not None:
            with lock:
                if holders.get(held.instance):
                    clash.append(held.instance)
                holders[held.instance] = 1
            read = store.read_state(C, held.instance)
            assert read is not None
            n = int(read.changed["n"]) + len(held.ops)
            time.sleep(0.001)
            with lock:
                holders[held.instance] = 0
            store.commit(C, held.instance, {"n": str(n).encode()}, claim=held, done=held.op_ids)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert clash == []
    for inst in instances:
        read = store.read_state(C, inst)
        assert read is not None and read.changed["n"] == b"40"
    assert ready(store) == []


def test_a_commit_whose_index_update_fails_still_counts(two_step: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second step of a commit only tidies the claim index: if it fails
    (or its worker dies just before it) the commit stands, and the
    instance's next op runs once the lease the hint remembers is over."""
    store = two_step
    store.create_instance(C, "i1", {"n": b"0"})
    store.enqueue(C, "i1", "f", b"1")
    store.enqueue(C, "i1", "f", b"2")
    held = store.claim([C], "w", 1.0, 1)  # 1 s: the checks below run while it holds, even on a loaded machine
    assert held is not None

    def broken(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(store.scripts, "global_settle", broken)
    assert store.commit(C, "i1", {"n": b"1"}, claim=held, done=held.op_ids) == 2
    monkeypatch.undo()
    assert store.pending(C, "i1") == 1
    assert store.claim([C], "w", 30, 10) is None  # the stale hint, until the lease would have ended
    deadline = time.monotonic() + 10
    while not (drained := drain(store)):  # once it has ended
        assert time.monotonic() < deadline, "the next op never became claimable"
        time.sleep(0.05)
    assert drained == [("i1", [b"2"])]


def test_scripts_come_back_after_the_script_cache_is_flushed(store: RedisStore) -> None:
    store.create_instance(C, "i1", {"a": b"A"})
    store.client.script_flush()
    store.enqueue(C, "i1", "f", b"x")
    assert drain(store) == [("i1", [b"x"])]


# -- a server that restarts ---------------------------------------------------------------


@pytest.mark.slow
def test_state_and_queues_survive_a_server_restart(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "data", appendonly=True)
    try:
        store = RedisStore.from_url(server.url() + "?namespace=restart")
        store.create_instance(C, "i1", {"a": b"A"})
        store.commit(C, "i1", {"a": b"A2"})
        first = store.enqueue(C, "i1", "f", b"x")
        server.shutdown()
        with pytest.raises(StoreError):
            store.get_version(C, "i1")
        server.start()
        assert store.get_version(C, "i1") == 2  # the same store object reconnects
        assert store.pending(C, "i1") == 1
        assert store.enqueue(C, "i1", "f", b"y") > first  # ids only grow, across restarts too
        assert drain(store) == [("i1", [b"x", b"y"])]
        store.close()
    finally:
        server.stop()
    assert (tmp_path / "data").exists()  # the caller's data directory is left alone


def test_on_one_server_enqueue_claim_and_a_workers_commit_are_one_script_each(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore.from_url(redis_url)
    try:

        def two_step(*args: object, **kwargs: object) -> None:
            raise AssertionError("a two-step script ran on one server")

        two_steps = ("global_enqueue", "instance_push", "global_settle", "instance_commit", "global_candidates")
        for name in (*two_steps, "instance_claim"):
            monkeypatch.setattr(store.scripts, name, two_step)
        store.create_instance(C, "i1", {"n": b"0"})
        first = store.enqueue(C, "i1", "f", b"1")
        assert store.enqueue_many([NewOp(C, "i1", "f", b"2", dedupe="d"), NewOp(C, "i1", "f", b"3", dedupe="d")]) == [
            first + 1,
            None,
        ]
        assert ready(store) == ["i1"]
        held = store.claim([C], "w", 30, 10)
        assert held is not None and [op.payload for op in held.ops] == [b"1", b"2"]
        assert store.commit(C, "i1", {"n": b"2"}, claim=held, done=held.op_ids) == 2
        # The commit settled the claim index too: no entry, no lease hint.
        assert ready(store) == [] and store.client.zcard(store.keys.of_component("leased", C)) == 0
        assert store.get_version(C, "i1") == 2 and store.pending(C, "i1") == 0
    finally:
        store.close()


# -- the hot path on a connection of its own ---------------------------------------------


def test_enqueue_claim_and_commit_run_on_the_threads_own_connection_not_the_pool(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore.from_url(redis_url)
    try:
        store.create_instance(C, "i1", {"n": b"0"})

        def pooled(*args: object, **kwargs: object) -> None:
            raise AssertionError("a hot-path script went through the client's pool")

        monkeypatch.setattr(store.client, "evalsha", pooled)
        first = store.enqueue(C, "i1", "f", b"1")
        assert store.enqueue(C, "i1", "f", b"2") == first + 1
        held = store.claim([C], "w", 30, 10)
        assert held is not None and held.op_ids == (first, first + 1)
        assert store.commit(C, "i1", {"n": b"2"}, claim=held, done=held.op_ids) == 2
    finally:
        monkeypatch.undo()
        store.close()


def test_the_hot_path_reloads_flushed_scripts_and_reconnects_after_a_kill(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    admin = redis.Redis.from_url(redis_url.split("?")[0])
    try:
        store.create_instance(C, "i1", {"n": b"0"})
        first = store.enqueue(C, "i1", "f", b"1")
        admin.script_flush()  # as a restart without persistence would: NOSCRIPT, then loaded again
        assert store.enqueue(C, "i1", "f", b"2") == first + 1
        # The server drops every client connection between two calls: the
        # next call sees its connection closed and opens a new one instead of failing.
        killed = admin.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        assert store.enqueue(C, "i1", "f", b"3") == first + 2
        assert [p for _, ps in drain(store) for p in ps] == [b"1", b"2", b"3"]
    finally:
        admin.close()
        store.close()


def test_a_claim_on_one_server_carries_the_instances_version(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    try:
        store.create_instance(C, "i1", {"n": b"0"})
        store.commit(C, "i1", {"n": b"1"})
        store.enqueue(C, "i1", "f", b"x")
        held = store.claim([C], "w", 30, 10)
        assert held is not None and held.version == 2 == store.get_version(C, "i1")
        store.commit(C, "i1", {"n": b"2"}, claim=held, done=held.op_ids)
    finally:
        store.close()
