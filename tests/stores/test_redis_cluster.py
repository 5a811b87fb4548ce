"""The Redis store on a real Redis Cluster of three masters (tests/servers.py;
the contract suite runs against it too, as ``redis-cluster``): URLs, keys of
instances on different nodes, scripts routed by their keys, a whole App and a
``tidal worker`` on the cluster, and a node that dies."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import RedisClusterException
from servers import RedisClusterServers, start_redis_cluster

from tidal.codec import Codec, state_context
from tidal.exceptions import ConfigError, StoreError
from tidal.stores import NewOp, from_url
from tidal.stores.redis import RedisClusterStore, RedisStore
from tidal.stores.redis.direct import DirectScripts

from .cluster_slots import node_of, spread
from .counters import TALLY_APP, count_in_threads, counter_app

C = "Comp"
SECRET = "redis-cluster-test-secret-0123456789"


@pytest.fixture
def store(redis_cluster_url: str) -> Iterator[RedisClusterStore]:
    s = from_url(redis_cluster_url)
    assert isinstance(s, RedisClusterStore)
    yield s
    s.close()


def slot_of(store: RedisStore, instance: str) -> int:
    return key_slot((store.keys.tag(C, instance) + ":meta").encode())


# -- URLs -----------------------------------------------------------------------------


def test_cluster_1_opens_the_cluster_store_in_single_slot_mode(redis_cluster_url: str) -> None:
    store = RedisStore.from_url(redis_cluster_url)
    try:
        assert isinstance(store, RedisClusterStore)
        assert store.single_slot
        assert isinstance(store.client, redis.cluster.RedisCluster)
        assert store.namespace in redis_cluster_url and "cluster=1" not in store.namespace
        assert len(store.client.get_primaries()) == 3  # type: ignore[attr-defined]
        store.create_instance(C, "i1", {"a": b"A"})
        assert store.list_instances(C) == ["i1"]  # a call to every node
    finally:
        store.close()
    # Closing closes the connections to every node, not the garbage collector.
    pools = [node.redis_connection.connection_pool for node in store.calls.client.get_nodes()]  # type: ignore[attr-defined]
    assert pools and not [c for pool in pools for c in pool._available_connections if c._sock is not None]
    explicit = from_url(redis_cluster_url + "&single_slot=1")
    assert isinstance(explicit, RedisClusterStore)
    explicit.close()


def test_cluster_urls_that_cannot_work_are_clear_errors(redis_cluster_url: str, redis_url: str) -> None:
    with pytest.raises(ConfigError, match="single_slot=0"):
        RedisStore.from_url(redis_cluster_url + "&single_slot=0")
    with pytest.raises(ConfigError, match=r"cluster in store URL .* must be 0 or 1"):
        RedisStore.from_url(redis_cluster_url.replace("cluster=1", "cluster=yes"))
    with pytest.raises(ConfigError, match="add cluster=1"):
        RedisClusterStore.from_url(redis_url)
    with pytest.raises(StoreError, match="Cluster mode is not enabled"):  # a plain server is no cluster
        RedisStore.from_url(redis_url + "&cluster=1")
    # Opening reads the cluster's layout, so an unreachable one fails now,
    # naming the URL without its password.
    with pytest.raises(StoreError, match=r"cannot open the Redis Cluster at 'redis://:\*\*\*@127.0.0.1:1/0'") as caught:
        RedisStore.from_url("redis://:hunter2@127.0.0.1:1/0?cluster=1")
    assert "hunter2" not in str(caught.value)


# -- keys on different nodes ----------------------------------------------------------


def test_instances_keys_live_on_the_node_of_their_slot(
    store: RedisClusterStore, redis_cluster: RedisClusterServers
) -> None:
    names = spread(store)
    assert len({node_of(store, n) for n in names}) == 3
    for name in names:
        store.create_instance(C, name, {"a": name.encode()})
    nodes = [node.connect() for node in redis_cluster.nodes]
    try:
        for name in names:
            slot = slot_of(store, name)
            assert store.client.cluster_keyslot(store.keys.tag(C, name) + ":vals") == slot  # type: ignore[attr-defined]
            # Every key of the instance is on one node, and only there.
            counts = {
                f"127.0.0.1:{node.port}": int(c.cluster("COUNTKEYSINSLOT", slot))
                for node, c in zip(redis_cluster.nodes, nodes, strict=True)
            }
            owner = node_of(store, name)
            assert counts[owner] >= 4 and sum(counts.values()) == counts[owner], counts
    finally:
        for c in nodes:
            c.close()

    # One enqueue spanning all three nodes, claimed and committed instance by instance.
    ids = store.enqueue_many([NewOp(C, name, "f", f"{name}:{k}".encode()) for k in range(3) for name in names])
    assert None not in ids and len(set(ids)) == len(ids)
    seen: dict[str, list[bytes]] = {}
    while (held := store.claim([C], "w", 30, 100)) is not None:
        seen.setdefault(held.instance, []).extend(op.payload for op in held.ops)
        store.commit(C, held.instance, {"n": str(len(held.ops)).encode()}, claim=held, done=held.op_ids)
    assert seen == {name: [f"{name}:{k}".encode() for k in range(3)] for name in names}
    for name in names:
        assert store.get_version(C, name) == 2
        assert store.pending(C, name) == 0
    assert sorted(store.list_instances(C)) == sorted(names)
    assert store.queue_stats([C])[C].pending == 0


def test_every_script_call_declares_keys_of_one_slot(store: RedisClusterStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[set[int]] = []
    real = DirectScripts.__call__

    def checked(self: DirectScripts, script: Any, keys: list[Any], args: list[Any]) -> Any:
        calls.append({key_slot(str(k).encode()) for k in keys})
        return real(self, script, keys, args)

    monkeypatch.setattr(DirectScripts, "__call__", checked)
    monkeypatch.setattr(store.client, "evalsha", lambda *a: pytest.fail("a script went through the cluster client"))
    names = spread(store, per_node=1)
    for name in names:
        store.create_instance(C, name, {"a": b"A"})
    store.enqueue_many([NewOp(C, name, "f", b"x", dedupe=f"d-{name}") for name in names])
    store.enqueue(C, names[0], "f", b"y")
    while (held := store.claim([C], "w", 30, 100)) is not None:
        assert store.renew(held, 30)
        store.commit(C, held.instance, {"a": b"B"}, deleted=["a"], claim=held, done=held.op_ids)
    store.read_state(C, names[0], since=1)
    store.describe_state(C, names[0])
    store.key_history(C, names[0], "a")
    store.last_op_id(C, names[0])
    store.failures(C, names[0])
    store.delete_instance(C, names[1])
    assert len(calls) > 3 * len(names)
    assert all(len(slots) == 1 for slots in calls), calls  # a key declared, and one slot only
    assert not store.calls.direct.connections()  # the one-server hot path was never opened
    assert len(store.client._directs) == 3  # type: ignore[attr-defined]  # one per node


def test_a_script_sent_to_a_node_that_no_longer_owns_its_slot_goes_through_the_cluster_client(
    store: RedisClusterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after a slot moved: the node answers MOVED (the script did not
    run) and the call is handed to the cluster client, which follows it."""
    name = spread(store, per_node=1)[0]
    store.create_instance(C, name, {"a": b"A"})
    wrong = next(n for n in store.client.get_primaries() if n.name != node_of(store, name))  # type: ignore[attr-defined]
    real_node = store.client.get_node_from_key  # type: ignore[attr-defined]
    stale = [wrong]  # the layout is wrong for one lookup, as the client's after a slot moved
    monkeypatch.setattr(
        store.client, "get_node_from_key", lambda *args, **kwargs: stale.pop() if stale else real_node(*args, **kwargs)
    )
    redirected: list[Any] = []
    real = store.client.evalsha
    monkeypatch.setattr(store.client, "evalsha", lambda *args: redirected.append(args) or real(*args))
    assert store.commit(C, name, {"a": b"B"}) == 2
    assert len(redirected) == 1
    monkeypatch.undo()
    got = store.read_state(C, name)
    assert got is not None and got.version == 2 and got.changed == {"a": b"B"}


def test_a_claim_index_hint_that_fails_is_logged_and_the_claim_stands(
    store: RedisClusterStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store.enqueue(C, "i1", "f", b"x")

    def no_node(*args: Any, **kwargs: Any) -> None:
        raise RedisClusterException("No targets were found")  # not a RedisError

    monkeypatch.setattr(store.client, "zadd", no_node)
    held = store.claim([C], "w", 30, 10)
    assert held is not None and [op.payload for op in held.ops] == [b"x"]
    assert "could not update the claim index: No targets were found" in caplog.text


def hgets(cluster: RedisClusterServers) -> int:
    """HGET calls the cluster's nodes have run so far."""
    total = 0
    for node in cluster.nodes:
        with node.connect() as client:
            total += int(client.info("commandstats").get("cmdstat_hget", {}).get("calls", 0))
    return total


def test_get_version_sees_another_processs_commit_at_once_on_every_node(
    redis_cluster: RedisClusterServers, redis_cluster_url: str
) -> None:
    reader, writer = from_url(redis_cluster_url), from_url(redis_cluster_url)
    try:
        names = spread(reader, per_node=1)
        for name in names:
            writer.create_instance(C, name, {"a": b"A"})
            assert reader.get_version(C, name) == 1
        for expected in range(2, 32):
            for name in names:
                writer.commit(C, name, {"a": str(expected).encode()})
                assert reader.get_version(C, name) == expected, (name, expected)
        writer.delete_instance(C, names[0])
        assert reader.get_version(C, names[0]) is None
    finally:
        reader.close()
        writer.close()


def test_unchanged_versions_are_answered_from_the_tracking_cache_of_each_node(
    redis_cluster: RedisClusterServers, redis_cluster_url: str
) -> None:
    store = from_url(redis_cluster_url)
    assert isinstance(store, RedisClusterStore)
    try:
        names = spread(store, per_node=2)
        for name in names:
            store.create_instance(C, name, {"a": b"A"})
        before = hgets(redis_cluster)
        for _ in range(50):
            assert [store.get_version(C, name) for name in names] == [1] * len(names)
        # One read per key, then tracked (a second only if a loaded machine
        # let one outlive VERSION_TRUST_S); without the cache: 300 reads.
        assert len(names) <= hgets(redis_cluster) - before <= 2 * len(names)
        assert len(store.versions._nodes) == 3  # type: ignore[attr-defined]  # a tracking connection per node
        # A worker's commit in this process: its version is read afresh.
        store.enqueue(C, names[0], "f", b"x")
        held = store.claim([C], "w", 30, 10)
        assert held is not None
        store.commit(C, names[0], {"a": b"B"}, claim=held, done=held.op_ids)
        assert store.get_version(C, names[0]) == 2
    finally:
        store.close()


def test_a_dead_node_fails_the_calls_on_its_slots_and_the_others_go_on() -> None:
    cluster = start_redis_cluster()
    try:
        store = from_url(cluster.url() + "?namespace=dead&cluster=1")
        assert isinstance(store, RedisClusterStore)
        # The first instance's node dies; it is not the global slot's (op ids, the claim index).
        hub = store.client.get_node_from_key(store.keys.ids).name  # type: ignore[attr-defined]
        names = sorted(spread(store, per_node=1), key=lambda name: node_of(store, name) == hub)
        for name in names:
            store.create_instance(C, name, {"a": b"A"})
        victim = cluster.node(node_of(store, names[0]))
        for node in cluster.nodes:
            # Else the others refuse every key too, once they agree that the
            # victim is down (after cluster-node-timeout).
            with node.connect() as client:
                client.config_set("cluster-require-full-coverage", "no")
        victim.kill()
        with pytest.raises(
            StoreError, match=r"Redis store redis://127.0.0.1:\d+/0\?namespace=dead&cluster=1 failed: .*refused"
        ):
            store.commit(C, names[0], {"a": b"B"})
        with pytest.raises(StoreError):
            store.get_version(C, names[0])
        for name in names[1:]:
            assert store.commit(C, name, {"a": b"B"}) == 2
            assert store.get_version(C, name) == 2

        # An enqueue there fails after its ids were allocated, which puts the
        # instance first in the claim index; claims pass over it to the others.
        with pytest.raises(StoreError, match="refused"):
            store.enqueue(C, names[0], "f", b"lost")
        ids = [store.enqueue(C, name, "f", b"x") for name in names[1:]]
        claimed = []
        for _ in names[1:]:
            held = store.claim([C], "w", 30, 10)
            assert held is not None
            claimed += held.op_ids
            store.commit(C, held.instance, {"a": b"C"}, claim=held, done=held.op_ids)
        assert sorted(claimed) == ids
        with pytest.raises(StoreError, match="refused"):  # only the dead one is left: its error, not None
            store.claim([C], "w", 30, 10)
        store.close()
    finally:
        cluster.stop()


# -- an App and a worker on the cluster -----------------------------------------------


def test_an_app_runs_updates_on_instances_all_over_the_cluster(redis_cluster_url: str, tmp_path: Path) -> None:
    app, Counter = counter_app(redis_cluster_url, tmp_path / "home", name="rc", worker_threads=3)
    try:
        assert isinstance(app.store, RedisClusterStore)
        counters = [Counter(name) for name in spread(app.store, component="Counter")]
        count_in_threads(counters, 40)
        for c in counters:
            assert app.store.pending("Counter", c.instance_id) == 0
    finally:
        app.close()


@pytest.mark.slow
def test_tidal_worker_runs_ops_enqueued_elsewhere_on_the_cluster(redis_cluster_url: str, tmp_path: Path) -> None:
    (tmp_path / "tallyapp.py").write_text(TALLY_APP)
    env = {**os.environ, "TIDAL_HOME": str(tmp_path / "home"), "TIDAL_SECRET_KEY": SECRET}
    env["TIDAL_STORE"] = redis_cluster_url
    producer = textwrap.dedent(
        """
        import tallyapp
        for name in ("t1", "t2", "t3", "t4"):
            t = tallyapp.Tally(name, disable_update_task=True)
            for k in range(1, 11):
                t.run("bump", props={"k": k})
        """
    )
    run = [sys.executable, "-c", producer]
    done = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    store = from_url(redis_cluster_url)
    try:
        assert [store.pending("Tally", name) for name in ("t1", "t2", "t3", "t4")] == [10] * 4
        worker = [sys.executable, "-m", "tidal.cli", "worker", "tallyapp.py", "--burst"]
        worked = subprocess.run(worker, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert worked.returncode == 0, worked.stderr
        assert "worker on redis://" in worked.stderr
        for name in ("t1", "t2", "t3", "t4"):
            assert store.pending("Tally", name) == 0
            read = store.read_state("Tally", name)
            assert (
                read is not None
                and Codec(SECRET.encode()).loads(read.changed["n"], context=state_context("Tally", name, "n")) == 55
            )
    finally:
        store.close()
