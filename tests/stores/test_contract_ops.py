"""The store contract's operator verbs (tidal/stores/base.py): state
description, per-key history, and failed ops listed, retried and dropped.
Run against every store of ``test_contract.STORE_FACTORIES``, a real Redis
included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidal.exceptions import VersionConflictError
from tidal.stores import Store

from .test_contract import LONG, OTHER, STORE_FACTORIES, C, make


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = STORE_FACTORIES[request.param](request, tmp_path)
    s.history_versions = 3
    yield s
    s.close()


def history(store: Store, key: str, instance: str = "i1", limit: int | None = None) -> list[tuple[int, bytes | None]]:
    return [(h.version, h.value) for h in store.key_history(C, instance, key, limit)]


# -- describe_state -------------------------------------------------------------


def test_describe_state_lists_live_keys_with_version_size_and_time(store: Store) -> None:
    before = time.time()
    make(store, a=b"A", b=b"BBBB", gone=b"x")
    store.commit(C, "i1", {"b": b"0123456789"}, deleted=["gone"])
    infos = store.describe_state(C, "i1")
    assert infos is not None
    assert [(i.key, i.version, i.size) for i in infos] == [("a", 1, 1), ("b", 2, 10)]
    for info in infos:
        assert info.written_at is not None and before - 1 <= info.written_at <= time.time() + 1


def test_describe_state_of_an_unknown_instance_is_none(store: Store) -> None:
    assert store.describe_state(C, "nope") is None


# -- key_history ----------------------------------------------------------------


def test_key_history_keeps_earlier_versions_newest_first(store: Store) -> None:
    make(store, a=b"v1", other=b"o")
    store.commit(C, "i1", {"a": b"v2"})
    store.commit(C, "i1", {"other": b"o2"})  # a commit that does not touch "a"
    store.commit(C, "i1", {"a": b"v4"})
    assert history(store, "a") == [(4, b"v4"), (2, b"v2"), (1, b"v1")]
    assert history(store, "a", limit=2) == [(4, b"v4"), (2, b"v2")]
    assert history(store, "a", limit=1) == [(4, b"v4")]
    assert history(store, "other") == [(3, b"o2"), (1, b"o")]
    entries = store.key_history(C, "i1", "a")
    assert all(e.written_at is not None for e in entries)


def test_key_history_keeps_at_most_history_versions_earlier_ones(store: Store) -> None:
    make(store, a=b"0")
    for n in range(1, 8):
        store.commit(C, "i1", {"a": str(n).encode()})
    # The current version and 3 earlier ones (history_versions = 3).
    assert history(store, "a") == [(8, b"7"), (7, b"6"), (6, b"5"), (5, b"4")]


def test_key_history_records_deletions(store: Store) -> None:
    make(store, a=b"v1", b=b"b")
    store.commit(C, "i1", {}, deleted=["a"])
    assert history(store, "a") == [(2, None), (1, b"v1")]
    store.commit(C, "i1", {"a": b"back"})
    assert history(store, "a") == [(3, b"back"), (2, None), (1, b"v1")]


def test_no_history_when_turned_off(store: Store) -> None:
    store.history_versions = 0
    make(store, a=b"v1")
    store.commit(C, "i1", {"a": b"v2"})
    assert history(store, "a") == [(2, b"v2")]


def test_a_refused_commit_leaves_no_history(store: Store) -> None:
    make(store, a=b"v1")
    with pytest.raises(VersionConflictError):
        store.commit(C, "i1", {"a": b"nope"}, expected_version=7)
    assert history(store, "a") == [(1, b"v1")]


def test_key_history_of_unknown_keys_and_instances_is_empty(store: Store) -> None:
    make(store)
    assert store.key_history(C, "i1", "nope") == []
    assert store.key_history(C, "nope", "a") == []


def test_history_is_per_instance_and_goes_with_the_instance(store: Store) -> None:
    make(store, "i1", a=b"one")
    make(store, "i2", a=b"two")
    store.commit(C, "i1", {"a": b"one2"})
    assert history(store, "a", "i2") == [(1, b"two")]
    store.delete_instance(C, "i1")
    make(store, "i1", a=b"fresh")
    assert history(store, "a", "i1") == [(1, b"fresh")]


# -- failed ops -------------------------------------------------------------------


def fail_ops(store: Store, instance: str, flows_payloads: list[tuple[str, bytes]], component: str = C) -> list[int]:
    """Enqueue ops and fail them all through a claim and commit."""
    if store.get_version(component, instance) is None:
        store.create_instance(component, instance, {"a": b"A"})
    ids = [store.enqueue(component, instance, flow, payload) for flow, payload in flows_payloads]
    held = store.claim([component], "worker", LONG, 100)
    assert held is not None and held.op_ids == tuple(ids)
    store.commit(component, instance, {}, claim=held, failed={i: f"boom {i}" for i in ids})
    return ids


def test_list_failures_spans_instances_newest_first(store: Store) -> None:
    (a,) = fail_ops(store, "i1", [("f", b"1")])
    (b,) = fail_ops(store, "i2", [("g", b"2")])
    (c,) = fail_ops(store, "i1", [("g", b"3")])
    fail_ops(store, "i1", [("f", b"4")], component=OTHER)
    listed = store.list_failures(C)
    assert [(f.op_id, f.instance, f.flow, f.error) for f in listed] == [
        (c, "i1", "g", f"boom {c}"),
        (b, "i2", "g", f"boom {b}"),
        (a, "i1", "f", f"boom {a}"),
    ]
    assert all(f.component == C and f.failed_at > 0 for f in listed)
    assert [f.op_id for f in store.list_failures(C, instance="i1")] == [c, a]
    assert [f.op_id for f in store.list_failures(C, flow="g")] == [c, b]
    assert [f.op_id for f in store.list_failures(C, limit=1)] == [c]
    assert store.list_failures("Nobody") == []


def test_retry_failed_requeues_the_same_op_at_the_tail_with_a_fresh_id(store: Store) -> None:
    (bad,) = fail_ops(store, "i1", [("g", b"payload-1")])
    queued = store.enqueue(C, "i1", "f", b"queued-meanwhile")
    new_id = store.retry_failed(C, "i1", bad)
    assert new_id is not None and new_id > queued
    assert store.failures(C, "i1") == []
    assert store.pending(C, "i1") == 2
    assert store.pending(C, "i1", flow="g") == 1
    held = store.claim([C], "worker", LONG, 100)
    assert held is not None
    assert [(op.id, op.flow, op.payload) for op in held.ops] == [
        (queued, "f", b"queued-meanwhile"),
        (new_id, "g", b"payload-1"),
    ]
    assert held.ops[1].attempts == 1
    store.commit(C, "i1", {"a": b"done"}, claim=held, done=held.op_ids)
    assert store.pending(C, "i1") == 0 and store.failures(C, "i1") == []


def test_retry_failed_of_an_empty_queue_is_claimable(store: Store) -> None:
    (bad,) = fail_ops(store, "i1", [("g", b"p")])
    assert store.claim([C], "worker", LONG, 100) is None
    new_id = store.retry_failed(C, "i1", bad)
    held = store.claim([C], "worker", LONG, 100)
    assert held is not None and held.op_ids == (new_id,)


def test_retry_or_drop_of_an_unknown_op_changes_nothing(store: Store) -> None:
    (bad,) = fail_ops(store, "i1", [("g", b"p")])
    pending = store.enqueue(C, "i1", "f", b"x")
    assert store.retry_failed(C, "i1", pending) is None  # pending, not failed
    assert store.retry_failed(C, "i2", bad) is None  # another instance's id
    assert store.retry_failed(C, "i1", 10_000) is None
    assert store.drop_failed(C, "i1", pending) is False
    assert store.drop_failed(OTHER, "i1", bad) is False
    assert [f.op_id for f in store.failures(C, "i1")] == [bad]
    assert store.pending(C, "i1") == 1


def test_drop_failed_forgets_the_op(store: Store) -> None:
    keep, drop = fail_ops(store, "i1", [("f", b"1"), ("g", b"2")])
    assert store.drop_failed(C, "i1", drop) is True
    assert store.drop_failed(C, "i1", drop) is False
    assert [f.op_id for f in store.failures(C, "i1")] == [keep]
    assert store.failures(C, "i1", flow="g") == []
    assert store.queue_stats([C])[C].failed == 1
    assert store.retry_failed(C, "i1", drop) is None


def test_sqlite_file_from_before_history_gains_the_column_and_keeps_working(tmp_path: Path) -> None:
    import sqlite3

    from tidal.stores.sqlite import SQLiteStore

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the layout of a file made before state history
        conn.executescript(
            "CREATE TABLE tidal_instances (component TEXT NOT NULL, instance TEXT NOT NULL, "
            "version INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, "
            "PRIMARY KEY (component, instance));"
            "CREATE TABLE tidal_state (component TEXT NOT NULL, instance TEXT NOT NULL, key TEXT NOT NULL, "
            "version INTEGER NOT NULL, value BLOB, PRIMARY KEY (component, instance, key));"
            "INSERT INTO tidal_instances VALUES ('Comp', 'old', 3, 0, 0);"
            "INSERT INTO tidal_state VALUES ('Comp', 'old', 'a', 3, x'4142');"
        )
    conn.close()
    store = SQLiteStore(path)
    try:
        (info,) = store.describe_state(C, "old") or []
        assert (info.key, info.version, info.size, info.written_at) == ("a", 3, 2, None)
        store.commit(C, "old", {"a": b"new"})
        assert history(store, "a", "old") == [(4, b"new"), (3, b"AB")]
        read = store.read_state(C, "old")
        assert read is not None and read.changed == {"a": b"new"}
    finally:
        store.close()
