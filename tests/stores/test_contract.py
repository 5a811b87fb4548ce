"""The store contract (tidal/stores/base.py), checked verb by verb against
every store. A new store joins by adding one entry to ``STORE_FACTORIES``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tidal.exceptions import LeaseLostError, StoreError, VersionConflictError
from tidal.stores import NewOp, QueueStats, Store
from tidal.stores.memory import MemoryStore
from tidal.stores.redis import RedisStore
from tidal.stores.sqlite import SQLiteStore

STORE_FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], Store]] = {
    "memory": lambda request, tmp: MemoryStore(),
    "sqlite": lambda request, tmp: SQLiteStore(tmp / "contract.db"),
    # A real redis-server (tests/servers.py), with a namespace of its own per test.
    "redis": lambda request, tmp: RedisStore.from_url(request.getfixturevalue("redis_url")),
    # The same, with every script kept to one hash slot (as on Redis Cluster).
    "redis-single-slot": lambda request, tmp: RedisStore.from_url(
        request.getfixturevalue("redis_url") + "&single_slot=1"
    ),
    # A real Redis Cluster of three masters (tests/servers.py).
    "redis-cluster": lambda request, tmp: RedisStore.from_url(request.getfixturevalue("redis_cluster_url")),
}

C = "Comp"
OTHER = "Other"
SHORT = 0.2  # lease / ttl seconds, for tests that only need it to run out (sleeping never ends early)
WINDOW = 1.0  # lease / ttl seconds, for tests that also check it still holds: room for a loaded machine's slow calls
LONG = 30.0  # lease seconds, for everything else


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = STORE_FACTORIES[request.param](request, tmp_path)
    yield s
    s.close()


def make(store: Store, instance: str = "i1", **values: bytes) -> None:
    created, version = store.create_instance(C, instance, values or {"a": b"A"})
    assert (created, version) == (True, 1)


def claim(store: Store, lease: float = LONG, max_ops: int = 100, components: tuple[str, ...] = (C,)):  # type: ignore[no-untyped-def]
    return store.claim(list(components), "worker", lease, max_ops)


def expire(ttl: float = SHORT, since: float | None = None) -> None:
    """Sleep until a lease or ttl of ``ttl`` seconds, granted before
    ``since`` (``time.monotonic()``, default now), has run out, and 0.1 s more."""
    start = time.monotonic() if since is None else since
    time.sleep(max(0.0, start + ttl + 0.1 - time.monotonic()))


# -- state --------------------------------------------------------------------


def test_unknown_instance_has_no_version_and_no_state(store: Store) -> None:
    assert store.get_version(C, "nope") is None
    assert store.read_state(C, "nope") is None
    assert store.list_instances(C) == []


def test_create_instance_starts_at_version_1_and_twice_returns_the_existing_one(store: Store) -> None:
    assert store.create_instance(C, "i1", {"a": b"A", "b": b"B"}) == (True, 1)
    assert store.get_version(C, "i1") == 1
    store.commit(C, "i1", {"a": b"A2"})
    assert store.create_instance(C, "i1", {"a": b"other", "z": b"Z"}) == (False, 2)
    read = store.read_state(C, "i1")
    assert read is not None
    assert read.version == 2
    assert read.changed == {"a": b"A2", "b": b"B"}


def test_instances_are_per_component(store: Store) -> None:
    make(store, "i1")
    assert store.get_version(OTHER, "i1") is None
    assert store.create_instance(OTHER, "i1", {"x": b"X"}) == (True, 1)
    other = store.read_state(OTHER, "i1")
    assert other is not None and other.changed == {"x": b"X"}


def test_read_state_full_and_since(store: Store) -> None:
    make(store, a=b"A", b=b"B", c=b"C")
    full = store.read_state(C, "i1")
    assert full is not None
    assert (full.version, full.changed, full.deleted) == (1, {"a": b"A", "b": b"B", "c": b"C"}, ())

    assert store.commit(C, "i1", {"b": b"B2"}) == 2
    assert store.commit(C, "i1", {"d": b"D"}, deleted=["c"]) == 3

    since1 = store.read_state(C, "i1", since=1)
    assert since1 is not None
    assert since1.version == 3
    assert since1.changed == {"b": b"B2", "d": b"D"}
    assert since1.deleted == ("c",)

    since2 = store.read_state(C, "i1", since=2)
    assert since2 is not None
    assert (since2.changed, since2.deleted) == ({"d": b"D"}, ("c",))

    since3 = store.read_state(C, "i1", since=3)
    assert since3 is not None
    assert (since3.version, since3.changed, since3.deleted) == (3, {}, ())

    # A full read lists what exists now, and no deletions.
    full = store.read_state(C, "i1")
    assert full is not None
    assert (full.changed, full.deleted) == ({"a": b"A", "b": b"B2", "d": b"D"}, ())


def test_deleted_key_written_again_is_changed_not_deleted(store: Store) -> None:
    make(store, a=b"A", b=b"B")
    store.commit(C, "i1", {}, deleted=["b"])
    store.commit(C, "i1", {"b": b"back"})
    read = store.read_state(C, "i1", since=1)
    assert read is not None
    assert (read.changed, read.deleted) == ({"b": b"back"}, ())


def test_commit_bumps_the_version_by_bump(store: Store) -> None:
    make(store)
    assert store.commit(C, "i1", {"a": b"1"}) == 2
    assert store.commit(C, "i1", {"a": b"2"}, bump=3) == 5
    assert store.get_version(C, "i1") == 5
    read = store.read_state(C, "i1", since=4)
    assert read is not None and read.changed == {"a": b"2"}


def test_empty_commit_keeps_the_version(store: Store) -> None:
    make(store)
    assert store.commit(C, "i1", {}) == 1
    assert store.commit(C, "i1", {}, bump=4) == 1
    assert store.get_version(C, "i1") == 1


def test_commit_with_a_stale_expected_version_conflicts_and_writes_nothing(store: Store) -> None:
    make(store)
    assert store.commit(C, "i1", {"a": b"1"}, expected_version=1) == 2
    with pytest.raises(VersionConflictError):
        store.commit(C, "i1", {"a": b"lost", "new": b"N"}, deleted=["a"], expected_version=1)
    read = store.read_state(C, "i1")
    assert read is not None
    assert (read.version, read.changed) == (2, {"a": b"1"})
    assert store.get_version(C, "i1") == 2


def test_commit_to_an_unknown_instance_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError):
        store.commit(C, "ghost", {"a": b"A"})
    assert store.get_version(C, "ghost") is None


def test_list_instances(store: Store) -> None:
    for name in ("b", "a", "c"):
        make(store, name)
    store.create_instance(OTHER, "z", {})
    assert sorted(store.list_instances(C)) == ["a", "b", "c"]
    assert store.list_instances(OTHER) == ["z"]


def test_delete_instance_removes_state_queue_failures_and_lease(store: Store) -> None:
    make(store, "i1")
    make(store, "i2")
    store.enqueue(C, "i1", "f", b"p1")
    store.enqueue(C, "i1", "f", b"p2")
    held = claim(store, max_ops=1)
    assert held is not None
    store.commit(C, "i1", {}, claim=held, failed={held.op_ids[0]: "boom"})
    assert claim(store) is not None  # i1's second op, leased
    store.enqueue(C, "i2", "f", b"q")

    store.delete_instance(C, "i1")
    assert store.get_version(C, "i1") is None
    assert store.read_state(C, "i1") is None
    assert store.pending(C, "i1") == 0
    assert store.failures(C, "i1") == []
    assert store.list_instances(C) == ["i2"]
    # i2 is untouched
    assert store.get_version(C, "i2") == 1
    assert store.pending(C, "i2") == 1

    # Recreated from scratch: version 1, no lease left behind, a fresh queue.
    assert store.create_instance(C, "i1", {"n": b"0"}) == (True, 1)
    read = store.read_state(C, "i1")
    assert read is not None and read.changed == {"n": b"0"}
    new_id = store.enqueue(C, "i1", "f", b"again")
    held_i2 = claim(store)
    assert held_i2 is not None and held_i2.instance == "i2"
    held_i1 = claim(store)
    assert held_i1 is not None and held_i1.instance == "i1" and held_i1.op_ids == (new_id,)


# -- queue --------------------------------------------------------------------


def test_enqueue_ids_grow_across_instances(store: Store) -> None:
    make(store, "i1")
    make(store, "i2")
    ids = [store.enqueue(C, inst, "f", b"x") for inst in ("i1", "i2", "i1", "i2")]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    assert ids[0] > 0


def test_ids_only_grow_even_after_every_op_is_done(store: Store) -> None:
    make(store)
    first = store.enqueue(C, "i1", "f", b"x")
    held = claim(store)
    assert held is not None
    store.commit(C, "i1", {"a": b"1"}, claim=held, done=held.op_ids)
    assert store.pending(C, "i1") == 0
    second = store.enqueue(C, "i1", "f", b"y")
    assert second > first
    held = claim(store)
    assert held is not None
    store.commit(C, "i1", {}, claim=held, done=held.op_ids)
    assert store.enqueue(C, "i1", "f", b"z") > second


def test_claim_returns_none_without_work(store: Store) -> None:
    assert claim(store) is None
    make(store)
    assert claim(store) is None
    store.enqueue(C, "i1", "f", b"x")
    assert store.claim([], "worker", LONG, 10) is None


def test_claim_hands_out_one_instance_s_ops_in_order(store: Store) -> None:
    make(store)
    ids = [store.enqueue(C, "i1", "f", f"p{n}".encode()) for n in range(3)]
    before = time.time()
    held = claim(store)
    assert held is not None
    assert (held.component, held.instance) == (C, "i1")
    assert held.op_ids == tuple(ids)
    assert [op.payload for op in held.ops] == [b"p0", b"p1", b"p2"]
    assert [op.flow for op in held.ops] == ["f", "f", "f"]
    assert all(op.attempts == 1 for op in held.ops)
    assert all(before - 5 < op.enqueued_at <= time.time() for op in held.ops)
    assert before + LONG - 1 < held.expires_at <= time.time() + LONG
    assert held.token


def test_claim_takes_the_instance_with_the_oldest_op_first(store: Store) -> None:
    for name in ("a", "b", "c"):
        make(store, name)
    store.enqueue(C, "b", "f", b"1")
    store.enqueue(C, "c", "f", b"2")
    store.enqueue(C, "a", "f", b"3")
    store.enqueue(C, "b", "f", b"4")
    order = []
    while (held := claim(store)) is not None:
        order.append((held.instance, len(held.ops)))
    assert order == [("b", 2), ("c", 1), ("a", 1)]


def test_claim_is_exclusive_per_instance_while_leased(store: Store) -> None:
    make(store, "i1")
    make(store, "i2")
    a1 = store.enqueue(C, "i1", "f", b"a1")
    b1 = store.enqueue(C, "i2", "f", b"b1")
    first = claim(store, max_ops=1)
    assert first is not None and first.instance == "i1" and first.op_ids == (a1,)
    a2 = store.enqueue(C, "i1", "f", b"a2")
    # i1 is leased: its next op must wait even though it is queued, while
    # another instance's ops are free to run in parallel.
    second = claim(store)
    assert second is not None and second.instance == "i2" and second.op_ids == (b1,)
    assert claim(store) is None
    store.commit(C, "i1", {}, claim=first, done=first.op_ids)
    third = claim(store)
    assert third is not None and third.instance == "i1" and third.op_ids == (a2,)


def test_claim_takes_only_the_listed_components(store: Store) -> None:
    make(store)
    store.create_instance(OTHER, "o1", {})
    other_id = store.enqueue(OTHER, "o1", "f", b"o")
    mine = store.enqueue(C, "i1", "f", b"c")
    assert claim(store, components=("Nobody",)) is None
    held = claim(store)
    assert held is not None and held.component == C and held.op_ids == (mine,)
    assert claim(store) is None
    held = claim(store, components=(C, OTHER))
    assert held is not None and held.component == OTHER and held.op_ids == (other_id,)


def test_claim_respects_max_ops(store: Store) -> None:
    make(store)
    ids = [store.enqueue(C, "i1", "f", b"x") for _ in range(5)]
    held = claim(store, max_ops=2)
    assert held is not None and held.op_ids == tuple(ids[:2])
    store.commit(C, "i1", {}, claim=held, done=held.op_ids)
    assert store.pending(C, "i1") == 3
    held = claim(store, max_ops=2)
    assert held is not None and held.op_ids == tuple(ids[2:4])
    store.commit(C, "i1", {}, claim=held, done=held.op_ids)
    held = claim(store, max_ops=2)
    assert held is not None and held.op_ids == (ids[4],)


def test_claim_counts_newer_ops_of_the_same_flow(store: Store) -> None:
    make(store)
    for flow in ("a", "b", "a", "a", "b", "c"):
        store.enqueue(C, "i1", flow, b"x")
    held = claim(store, max_ops=3)
    assert held is not None
    # a: 3 queued in all, b: 2, c: 1 -- counted across the whole queue,
    # not only the claimed batch.
    assert [(op.flow, op.newer_same_flow) for op in held.ops] == [("a", 2), ("b", 1), ("a", 1)]
    store.release(held)
    held = claim(store)
    assert held is not None
    assert [(op.flow, op.newer_same_flow) for op in held.ops] == [
        ("a", 2),
        ("b", 1),
        ("a", 1),
        ("a", 0),
        ("b", 0),
        ("c", 0),
    ]


def test_ops_of_an_expired_lease_are_handed_out_again(store: Store) -> None:
    make(store)
    ids = [store.enqueue(C, "i1", "f", b"x") for _ in range(2)]
    first = claim(store, lease=WINDOW)
    granted = time.monotonic()
    assert first is not None and first.op_ids == tuple(ids)
    assert claim(store) is None
    expire(WINDOW, granted)
    late = store.enqueue(C, "i1", "f", b"late")
    second = claim(store)
    assert second is not None
    assert second.token != first.token
    assert second.op_ids == (*ids, late)
    assert [op.attempts for op in second.ops] == [2, 2, 1]


def test_commit_with_claim_retires_done_ops_keeps_failed_and_releases_the_lease(store: Store) -> None:
    make(store)
    ok1 = store.enqueue(C, "i1", "f", b"1")
    bad = store.enqueue(C, "i1", "g", b"2")
    ok2 = store.enqueue(C, "i1", "f", b"3")
    held = claim(store)
    assert held is not None
    after = store.enqueue(C, "i1", "f", b"4")  # not part of the claim
    before = time.time()
    version = store.commit(C, "i1", {"a": b"new"}, claim=held, done=[ok1, ok2], failed={bad: "Traceback: boom"})
    assert version == 2
    read = store.read_state(C, "i1")
    assert read is not None and read.changed == {"a": b"new"}

    assert store.pending(C, "i1") == 1  # only the op enqueued after the claim
    failed = store.failures(C, "i1")
    assert len(failed) == 1
    f = failed[0]
    assert (f.op_id, f.component, f.instance, f.flow, f.error) == (bad, C, "i1", "g", "Traceback: boom")
    assert before - 1 <= f.failed_at <= time.time() + 1

    # The lease was released: the remaining op can be claimed at once.
    nxt = claim(store)
    assert nxt is not None and nxt.op_ids == (after,)
    # A failed op is never handed out again.
    store.commit(C, "i1", {}, claim=nxt, done=nxt.op_ids)
    assert claim(store) is None


def test_commit_with_claim_and_no_changes_keeps_the_version(store: Store) -> None:
    make(store)
    store.enqueue(C, "i1", "f", b"x")
    held = claim(store)
    assert held is not None
    assert store.commit(C, "i1", {}, claim=held, done=held.op_ids) == 1
    assert store.pending(C, "i1") == 0


def _snapshot(store: Store) -> tuple[object, ...]:
    read = store.read_state(C, "i1")
    assert read is not None
    return (
        store.get_version(C, "i1"),
        read.version,
        read.changed,
        store.pending(C, "i1"),
        store.failures(C, "i1"),
    )


def _lose(store: Store, how: str):  # type: ignore[no-untyped-def]
    """A claim on i1's ops whose lease is lost in the way ``how`` says, and
    the claim (if any) that holds the instance now."""
    if how == "released":
        stale = claim(store)
        assert stale is not None
        store.release(stale)
        return stale, None
    stale = claim(store, lease=SHORT)
    assert stale is not None
    expire()
    if how == "expired":
        return stale, None
    if how == "taken over":
        return stale, claim(store)
    assert how == "completed elsewhere"
    winner = claim(store)
    assert winner is not None
    store.commit(C, "i1", {"a": b"winner"}, claim=winner, done=winner.op_ids)
    return stale, None


@pytest.mark.parametrize("how", ["expired", "taken over", "released", "completed elsewhere"])
def test_commit_with_a_lost_lease_is_refused_and_writes_nothing(store: Store, how: str) -> None:
    make(store)
    ids = [store.enqueue(C, "i1", "f", b"x") for _ in range(3)]
    stale, holder = _lose(store, how)
    before = _snapshot(store)
    with pytest.raises(LeaseLostError):
        store.commit(
            C,
            "i1",
            {"a": b"stale", "zzz": b"Z"},
            deleted=["a"],
            claim=stale,
            done=ids[:2],
            failed={ids[2]: "stale error"},
        )
    assert _snapshot(store) == before
    if holder is not None:
        # The new holder's lease survived the refused commit.
        assert claim(store) is None
        assert store.commit(C, "i1", {"a": b"fresh"}, claim=holder, done=holder.op_ids) == 2
        assert store.pending(C, "i1") == 0


def test_renew_extends_a_held_lease(store: Store) -> None:
    make(store)
    store.enqueue(C, "i1", "f", b"x")
    held = claim(store, lease=WINDOW)
    granted = time.monotonic()
    assert held is not None
    old_expiry = held.expires_at
    assert store.renew(held, LONG) is True
    assert held.expires_at > old_expiry + 1
    expire(WINDOW, granted)  # the first lease would have run out by now
    assert claim(store) is None  # still ours
    assert store.commit(C, "i1", {"a": b"1"}, claim=held, done=held.op_ids) == 2


def test_renew_fails_once_the_lease_expired(store: Store) -> None:
    make(store)
    store.enqueue(C, "i1", "f", b"x")
    held = claim(store, lease=SHORT)
    assert held is not None
    expire()
    assert store.renew(held, LONG) is False
    # Renewing did not resurrect it: another worker can take the ops.
    other = claim(store)
    assert other is not None
    assert store.renew(held, LONG) is False
    assert store.renew(other, LONG) is True
    with pytest.raises(LeaseLostError):
        store.commit(C, "i1", {"a": b"1"}, claim=held, done=held.op_ids)


def test_release_gives_the_ops_back(store: Store) -> None:
    make(store)
    ids = [store.enqueue(C, "i1", "f", b"x") for _ in range(2)]
    held = claim(store)
    assert held is not None
    store.release(held)
    assert store.pending(C, "i1") == 2
    assert store.get_version(C, "i1") == 1
    again = claim(store)
    assert again is not None and again.op_ids == tuple(ids)
    assert [op.attempts for op in again.ops] == [2, 2]


def test_release_of_a_stale_claim_leaves_the_new_holder_alone(store: Store) -> None:
    make(store)
    store.enqueue(C, "i1", "f", b"x")
    stale = claim(store, lease=SHORT)
    assert stale is not None
    expire()
    holder = claim(store)
    assert holder is not None
    store.release(stale)
    assert claim(store) is None
    assert store.commit(C, "i1", {"a": b"1"}, claim=holder, done=holder.op_ids) == 2


def test_pending_counts_queued_and_running_ops_by_flow_and_id(store: Store) -> None:
    make(store)
    assert store.pending(C, "i1") == 0
    a1 = store.enqueue(C, "i1", "a", b"x")
    b1 = store.enqueue(C, "i1", "b", b"x")
    a2 = store.enqueue(C, "i1", "a", b"x")
    assert store.pending(C, "i1") == 3
    assert store.pending(C, "i1", flow="a") == 2
    assert store.pending(C, "i1", flow="b") == 1
    assert store.pending(C, "i1", flow="zzz") == 0
    assert store.pending(C, "i1", upto=b1) == 2
    assert store.pending(C, "i1", upto=a1) == 1
    assert store.pending(C, "i1", upto=a1 - 1) == 0
    assert store.pending(C, "i1", flow="a", upto=b1) == 1
    assert store.pending(C, "i1", flow="a", upto=a2) == 2
    held = claim(store, max_ops=1)
    assert held is not None
    assert store.pending(C, "i1") == 3  # a claimed op is still pending until committed
    store.commit(C, "i1", {}, claim=held, failed={a1: "boom"})
    assert store.pending(C, "i1") == 2  # failed ops are not pending
    assert store.pending(C, "i1", flow="a") == 1
    assert store.pending(C, "other") == 0


def test_last_op_id(store: Store) -> None:
    make(store)
    assert store.last_op_id(C, "i1") == 0
    a1 = store.enqueue(C, "i1", "a", b"x")
    b1 = store.enqueue(C, "i1", "b", b"x")
    assert store.last_op_id(C, "i1") == b1
    assert store.last_op_id(C, "i1", flow="a") == a1
    assert store.last_op_id(C, "i1", flow="b") == b1
    assert store.last_op_id(C, "i1", flow="zzz") == 0
    make(store, "i2")
    store.enqueue(C, "i2", "a", b"x")  # other instances do not count
    assert store.last_op_id(C, "i1") == b1
    # Failed ops still count; done ones do not.
    held = claim(store)
    assert held is not None and held.instance == "i1"
    store.commit(C, "i1", {}, claim=held, done=[b1], failed={a1: "boom"})
    assert store.last_op_id(C, "i1", flow="a") == a1
    assert store.last_op_id(C, "i1") == a1
    assert store.last_op_id(C, "i1", flow="b") == 0


def test_last_op_id_is_zero_once_every_op_is_done(store: Store) -> None:
    make(store)
    store.enqueue(C, "i1", "a", b"x")
    held = claim(store)
    assert held is not None
    store.commit(C, "i1", {}, claim=held, done=held.op_ids)
    assert store.last_op_id(C, "i1") == 0
    assert store.last_op_id(C, "i1", flow="a") == 0


def test_failures_filter_by_flow_and_id_range_oldest_first(store: Store) -> None:
    make(store)
    ids = [store.enqueue(C, "i1", flow, b"x") for flow in ("a", "b", "a", "a")]
    ok = store.enqueue(C, "i1", "a", b"x")
    held = claim(store)
    assert held is not None
    store.commit(
        C,
        "i1",
        {},
        claim=held,
        done=[ok],
        # recorded in a different order than enqueued
        failed={i: f"error {i}" for i in reversed(ids)},
    )
    assert [f.op_id for f in store.failures(C, "i1")] == ids
    assert [f.error for f in store.failures(C, "i1")] == [f"error {i}" for i in ids]
    assert [f.op_id for f in store.failures(C, "i1", flow="a")] == [ids[0], ids[2], ids[3]]
    assert [f.op_id for f in store.failures(C, "i1", flow="b")] == [ids[1]]
    assert [f.op_id for f in store.failures(C, "i1", after=ids[1])] == ids[2:]
    assert [f.op_id for f in store.failures(C, "i1", upto=ids[1])] == ids[:2]
    assert [f.op_id for f in store.failures(C, "i1", after=ids[0], upto=ids[2])] == ids[1:3]
    assert [f.op_id for f in store.failures(C, "i1", flow="a", after=ids[0], upto=ids[2])] == [ids[2]]
    assert store.failures(C, "i1", after=ids[3]) == []
    assert store.failures(C, "i2") == []


# -- cache --------------------------------------------------------------------


def test_cache_get_and_set(store: Store) -> None:
    assert store.cache_get(b"k") is None
    store.cache_set(b"k", b"v1", 60)
    assert store.cache_get(b"k") == b"v1"
    store.cache_set(b"k", b"v2", 60)
    assert store.cache_get(b"k") == b"v2"
    assert store.cache_get(b"other") is None


def test_cache_entries_expire_after_their_ttl(store: Store) -> None:
    store.cache_set(b"short", b"s", WINDOW)
    granted = time.monotonic()
    store.cache_set(b"long", b"l", LONG)
    assert store.cache_get(b"short") == b"s"
    expire(WINDOW, granted)
    assert store.cache_get(b"short") is None
    assert store.cache_get(b"long") == b"l"
    # An expired key can be set again.
    store.cache_set(b"short", b"s2", LONG)
    assert store.cache_get(b"short") == b"s2"


def test_claim_without_counting_newer_ops_counts_only_within_the_batch(store: Store) -> None:
    make(store)
    for flow in ("a", "b", "a", "a"):
        store.enqueue(C, "i1", flow, b"x")
    held = store.claim([C], "worker", LONG, 2, count_newer=False)
    assert held is not None
    assert [(op.flow, op.newer_same_flow) for op in held.ops] == [("a", 0), ("b", 0)]


def test_sqlite_queue_index_forgets_drained_instances(tmp_path: Path) -> None:
    """Claims look at tidal_queues; an instance whose ops are all done must
    leave it, or every idle poll would grow with every instance ever used."""
    import sqlite3

    from tidal.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "q.db")
    store.create_instance("C", "a", {})
    store.enqueue("C", "a", "f", b"x")
    store.enqueue("C", "a", "f", b"y")
    claim = store.claim(["C"], "w", 5.0, 1)
    assert claim is not None
    store.commit("C", "a", {}, claim=claim, done=claim.op_ids)
    rows = sqlite3.connect(tmp_path / "q.db").execute("SELECT count(*) FROM tidal_queues").fetchone()[0]
    assert rows == 1  # one op still pending
    claim = store.claim(["C"], "w", 5.0, 10)
    assert claim is not None
    store.commit("C", "a", {}, claim=claim, done=claim.op_ids)
    rows = sqlite3.connect(tmp_path / "q.db").execute("SELECT count(*) FROM tidal_queues").fetchone()[0]
    assert rows == 0
    store.close()


# -- enqueue_many and dedupe keys ---------------------------------------------


def op(instance: str = "i1", payload: bytes = b"x", flow: str = "f", component: str = C, **dedupe: Any) -> NewOp:
    return NewOp(component, instance, flow, payload, **dedupe)


def claimed_payloads(store: Store, components: tuple[str, ...] = (C,)) -> list[tuple[str, list[bytes]]]:
    """Claim and finish everything queued: (instance, payloads in claim order) per claim."""
    out = []
    while (held := claim(store, components=components)) is not None:
        out.append((held.instance, [o.payload for o in held.ops]))
        store.commit(held.component, held.instance, {}, claim=held, done=held.op_ids)
    return out


def test_enqueue_many_returns_ids_in_input_order_across_instances(store: Store) -> None:
    make(store, "i1")
    make(store, "i2")
    store.create_instance(OTHER, "i1", {})
    assert store.enqueue_many([]) == []
    ids = store.enqueue_many(
        [op("i1", b"1"), op("i2", b"2", flow="g"), op("i1", b"3", component=OTHER), op("i1", b"4")]
    )
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert store.enqueue(C, "i2", "f", b"5") > max(i for i in ids if i is not None)
    assert (store.pending(C, "i1"), store.pending(C, "i2"), store.pending(OTHER, "i1")) == (2, 2, 1)
    assert store.pending(C, "i2", flow="g") == 1
    held = claim(store)
    assert held is not None
    assert (held.instance, held.op_ids, [o.flow for o in held.ops]) == ("i1", (ids[0], ids[3]), ["f", "f"])
    store.commit(C, "i1", {}, claim=held, done=held.op_ids)
    assert claimed_payloads(store) == [("i2", [b"2", b"5"])]
    assert claimed_payloads(store, (OTHER,)) == [("i1", [b"3"])]


def test_a_repeated_dedupe_key_is_not_enqueued_again(store: Store) -> None:
    make(store, "i1")
    make(store, "i2")
    first = store.enqueue_many(
        [
            op(payload=b"a", dedupe="k1"),
            op(payload=b"b", dedupe="k1"),  # repeated within one call
            op(payload=b"c", dedupe="k2"),
            op(payload=b"d"),
            op("i2", b"e", dedupe="k1"),  # keys are global, not per instance
        ]
    )
    assert [i is None for i in first] == [False, True, False, False, True]
    second = store.enqueue_many([op(payload=b"f", dedupe="k2"), op(payload=b"g", dedupe="k3"), op(payload=b"h")])
    assert [i is None for i in second] == [True, False, False]
    kept = [i for i in first + second if i is not None]
    assert kept == sorted(kept)
    assert store.pending(C, "i1") == 5
    assert store.pending(C, "i2") == 0
    assert claimed_payloads(store) == [("i1", [b"a", b"c", b"d", b"g", b"h"])]


def test_a_dedupe_key_outlives_its_op(store: Store) -> None:
    """A change handed over again after its op already ran (a dispatcher
    killed before it acknowledged the change) is still not queued twice."""
    make(store)
    assert store.enqueue_many([op(dedupe="chg:1")])[0] is not None
    assert claimed_payloads(store) == [("i1", [b"x"])]
    assert store.pending(C, "i1") == 0
    assert store.enqueue_many([op(dedupe="chg:1")]) == [None]
    assert store.pending(C, "i1") == 0


def test_dedupe_keys_expire_after_their_ttl(store: Store) -> None:
    make(store)
    first = store.enqueue_many([op(dedupe="short", dedupe_ttl=WINDOW), op(dedupe="long", dedupe_ttl=LONG)])
    granted = time.monotonic()
    assert None not in first
    assert store.enqueue_many([op(dedupe="short", dedupe_ttl=WINDOW), op(dedupe="long", dedupe_ttl=LONG)]) == [
        None,
        None,
    ]
    expire(WINDOW, granted)
    again = store.enqueue_many([op(dedupe="short", dedupe_ttl=LONG), op(dedupe="long", dedupe_ttl=LONG)])
    assert again[0] is not None and again[0] > max(i for i in first if i is not None)
    assert again[1] is None  # an expired key does not take others with it
    # The key's new use starts a new window, with its own ttl.
    expire()
    assert store.enqueue_many([op(dedupe="short")]) == [None]
    assert store.pending(C, "i1") == 3


def test_memory_store_forgets_expired_dedupe_keys() -> None:
    """Every change and tick leaves a key: expired ones must go, or a
    long-running memory store grows without bound."""
    store = MemoryStore()
    store.create_instance(C, "i1", {})
    for n in range(3000):
        store.enqueue_many([op(dedupe=f"k{n}", dedupe_ttl=0.0)])
    assert len(store._dedupe) < 1100
    assert store.enqueue_many([op(dedupe="k2999")])[0] is not None


def test_queue_stats_count_pending_failed_and_the_oldest_op(store: Store) -> None:
    store.create_instance("Q", "a", {})
    store.create_instance("Q", "b", {})
    assert store.queue_stats(["Q", "Other"]) == {
        "Q": QueueStats(0, 0, 0, None),
        "Other": QueueStats(0, 0, 0, None),
    }
    before = time.time()
    first = store.enqueue("Q", "a", "f", b"1")
    store.enqueue("Q", "a", "f", b"2")
    store.enqueue("Q", "b", "g", b"3")
    stats = store.queue_stats(["Q"])["Q"]
    assert (stats.pending, stats.failed, stats.instances) == (3, 0, 2)
    assert stats.oldest_enqueued_at is not None
    assert before - 1 <= stats.oldest_enqueued_at <= time.time() + 1

    claim = store.claim(["Q"], "w", 5.0, 1)
    assert claim is not None and claim.op_ids == (first,)
    store.commit("Q", "a", {}, claim=claim, failed={first: "boom"})
    stats = store.queue_stats(["Q"])["Q"]
    assert (stats.pending, stats.failed, stats.instances) == (2, 1, 2)


def test_a_claim_says_whether_other_instances_were_waiting(store: Store) -> None:
    make(store, "i1")
    make(store, "i2")
    make(store, "i3")
    store.enqueue(C, "i1", "f", b"1")
    store.enqueue(C, "i2", "f", b"2")
    first = claim(store)
    assert first is not None and first.instance == "i1" and first.others_waiting
    # i1 is leased: only i2 is runnable, so the claim of i2 saw nobody else.
    second = claim(store)
    assert second is not None and second.instance == "i2" and not second.others_waiting
    store.commit(C, "i1", {}, claim=first, done=first.op_ids)
    store.commit(C, "i2", {}, claim=second, done=second.op_ids)
    store.enqueue(C, "i3", "f", b"3")
    third = claim(store)
    assert third is not None and third.instance == "i3" and not third.others_waiting
