"""What the Redis store keeps per instance in a process (formatted enqueue
keys, cached versions) stays within its bound however many instances it
meets, and an instance whose entry was dropped is still answered right: its
version is read from the server again, its enqueue keys formatted again.
The store tests talk to a real redis-server."""

from __future__ import annotations

import pytest

from tidal.config import redis_enqueue_names_cached, redis_versions_cached
from tidal.lru import LRU
from tidal.stores.redis import RedisStore
from tidal.stores.redis.one_server import OneServerPaths

C = "Comp"


def test_lru_keeps_the_most_recently_used() -> None:
    lru: LRU[str, int] = LRU(3)
    for n, key in enumerate("abc"):
        lru.put(key, n)
    assert lru.get("a") == 0  # now the most recent: b goes first
    lru.put("d", 3)
    assert len(lru) == 3 and "b" not in lru and lru.get("b") is None
    assert [k for k in "acd" if k in lru] == ["a", "c", "d"]
    lru.put("c", 9)  # an update is a use
    lru.put("e", 4)
    assert "a" not in lru and lru.get("c") == 9
    lru.limit = 1  # lowering the bound drops the oldest at once
    assert len(lru) == 1 and "c" in lru  # read last
    lru.pop("c")
    lru.pop("missing")
    assert len(lru) == 0
    with pytest.raises(ValueError, match="whole number >= 1"):
        LRU(0)


def test_the_bounds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIDAL_REDIS_VERSIONS_CACHED", raising=False)
    monkeypatch.delenv("TIDAL_REDIS_ENQUEUE_NAMES_CACHED", raising=False)
    assert (redis_versions_cached(), redis_enqueue_names_cached()) == (100_000, 10_000)
    monkeypatch.setenv("TIDAL_REDIS_VERSIONS_CACHED", "7")
    monkeypatch.setenv("TIDAL_REDIS_ENQUEUE_NAMES_CACHED", " 3 ")
    assert (redis_versions_cached(), redis_enqueue_names_cached()) == (7, 3)
    for bad in ("0", "-1", "many"):
        monkeypatch.setenv("TIDAL_REDIS_VERSIONS_CACHED", bad)
        with pytest.raises(ValueError, match="TIDAL_REDIS_VERSIONS_CACHED must be a whole number >= 1"):
            redis_versions_cached()


def test_many_instances_keep_at_most_the_bound_and_dropped_ones_answer_right(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDAL_REDIS_VERSIONS_CACHED", "8")
    monkeypatch.setenv("TIDAL_REDIS_ENQUEUE_NAMES_CACHED", "4")
    mine, theirs = RedisStore.from_url(redis_url), RedisStore.from_url(redis_url)
    try:
        assert isinstance(mine.paths, OneServerPaths)
        names = mine.paths.enqueue_names
        assert (mine.versions.limit, names.limit) == (8, 4)  # type: ignore[attr-defined]
        ids = [f"i{n}" for n in range(60)]
        for n, instance in enumerate(ids):
            theirs.create_instance(C, instance, {"n": str(n).encode()})
        for instance in ids:
            assert mine.get_version(C, instance) == 1
            mine.enqueue(C, instance, "f", instance.encode())
            assert mine.versions.cached <= 8  # type: ignore[attr-defined]
            assert len(names) <= 4
        assert mine.versions.cached == 8 and len(names) == 4  # type: ignore[attr-defined]
        assert (C, "i0") not in names and (C, "i59") in names

        # i0's version was dropped from the cache; another process commits
        # to it: the next get_version reads it from the server.
        assert theirs.commit(C, "i0", {"n": b"changed"}) == 2
        assert mine.get_version(C, "i0") == 2
        # Its enqueue keys were dropped too: formatted again, same queue.
        second = mine.enqueue(C, "i0", "f", b"again")
        assert mine.pending(C, "i0") == 2 and theirs.pending(C, "i0") == 2
        assert mine.last_op_id(C, "i0") == second
        # Each instance's queue holds its own ops (claimed and held, so
        # that every claim is of another instance).
        seen: dict[str, list[bytes]] = {}
        while (got := theirs.claim([C], "checker", lease_seconds=60, max_ops=10)) is not None:
            seen[got.instance] = [op.payload for op in got.ops]
        assert seen == {i: [i.encode(), b"again"] if i == "i0" else [i.encode()] for i in ids}
    finally:
        mine.close()
        theirs.close()
