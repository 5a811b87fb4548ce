"""The Redis store's get_version cache (client-side tracking): a version
written through another connection is seen by the very next get_version,
without a round trip while nothing changed. Everything talks to a real
redis-server."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from tidal.stores.redis import RedisStore, versions

C = "Comp"


@pytest.fixture
def pair(redis_url: str) -> Iterator[tuple[RedisStore, RedisStore]]:
    mine, theirs = RedisStore.from_url(redis_url), RedisStore.from_url(redis_url)
    yield mine, theirs
    mine.close()
    theirs.close()


def hgets(store: RedisStore) -> int:
    stats = store.client.info("commandstats")
    return int(stats.get("cmdstat_hget", {}).get("calls", 0))


def test_a_commit_through_another_connection_is_seen_at_once(pair: tuple[RedisStore, RedisStore]) -> None:
    mine, theirs = pair
    assert mine.get_version(C, "i1") is None
    theirs.create_instance(C, "i1", {"a": b"A"})
    assert mine.get_version(C, "i1") == 1  # a missing instance is not cached past its creation
    for n in range(2, 1002):
        assert mine.get_version(C, "i1") == n - 1
        assert theirs.commit(C, "i1", {"a": str(n).encode()}) == n
        assert mine.get_version(C, "i1") == n
    theirs.delete_instance(C, "i1")
    assert mine.get_version(C, "i1") is None
    theirs.create_instance(C, "i1", {})
    assert mine.get_version(C, "i1") == 1


def test_unchanged_versions_are_served_without_a_round_trip(
    pair: tuple[RedisStore, RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(versions, "VERSION_TRUST_S", 3600.0)  # a slow machine must not re-read
    mine, theirs = pair
    theirs.create_instance(C, "i1", {"a": b"A"})
    assert mine.versions.tracking
    before = hgets(mine)
    for _ in range(50):
        assert mine.get_version(C, "i1") == 1
        assert mine.get_version(C, "absent") is None
    assert hgets(mine) - before == 2  # one read each, then tracked
    theirs.commit(C, "i1", {"a": b"B"})  # (its script's own HGETs count too)
    before = hgets(mine)
    for _ in range(50):
        assert mine.get_version(C, "i1") == 2
    assert hgets(mine) - before == 1


def test_a_cached_version_is_read_again_after_the_trust_bound(
    pair: tuple[RedisStore, RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, theirs = pair
    theirs.create_instance(C, "i1", {"a": b"A"})
    assert mine.get_version(C, "i1") == 1
    monkeypatch.setattr(versions, "VERSION_TRUST_S", 0.0)
    before = hgets(mine)
    assert mine.get_version(C, "i1") == 1
    assert hgets(mine) - before == 1


def test_writes_by_raw_commands_and_scripts_invalidate_too(pair: tuple[RedisStore, RedisStore]) -> None:
    mine, theirs = pair
    theirs.create_instance(C, "i1", {"a": b"A"})
    meta = theirs.keys.tag(C, "i1") + ":meta"
    assert mine.get_version(C, "i1") == 1
    theirs.client.hset(meta, "v", 41)
    assert mine.get_version(C, "i1") == 41
    theirs.client.eval("redis.call('HINCRBY', KEYS[1], 'v', 1)", 1, meta)
    assert mine.get_version(C, "i1") == 42
    theirs.client.delete(meta)
    assert mine.get_version(C, "i1") is None


def test_a_killed_tracking_connection_is_reopened_and_the_cache_dropped(pair: tuple[RedisStore, RedisStore]) -> None:
    mine, theirs = pair
    theirs.create_instance(C, "i1", {"a": b"A"})
    assert mine.get_version(C, "i1") == 1
    conn = mine.versions.connection
    conn.send_command("CLIENT", "ID")
    theirs.client.client_kill_filter(_id=conn.read_response())
    theirs.commit(C, "i1", {"a": b"B"})  # no invalidation can reach the killed connection
    assert mine.get_version(C, "i1") == 2
    theirs.commit(C, "i1", {"a": b"C"})  # the new connection tracks again
    assert mine.get_version(C, "i1") == 3


def test_threads_reading_while_another_process_commits_see_every_commit_in_order(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    mine, theirs = pair
    theirs.create_instance(C, "i1", {})
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        last = 0
        while not stop.is_set():
            seen = mine.get_version(C, "i1") or 0
            if seen < last:
                problems.append(f"went back from {last} to {seen}")
            last = seen

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(2, 302):
            theirs.commit(C, "i1", {"a": b"x"})
            assert mine.get_version(C, "i1") == n
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert problems == []


def test_without_tracking_each_call_reads_the_server(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url.split("?")[0])
    user, password = f"nt_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all", "-client"])
    url = redis_url.replace("redis://", f"redis://{user}:{password}@")
    mine, theirs = RedisStore.from_url(url), RedisStore.from_url(redis_url)
    try:
        theirs.create_instance(C, "i1", {"a": b"A"})
        assert mine.get_version(C, "i1") == 1
        assert not mine.versions.tracking  # CLIENT TRACKING refused: plain HGETs
        for n in range(2, 12):
            theirs.commit(C, "i1", {"a": b"B"})
            assert mine.get_version(C, "i1") == n
        before = hgets(theirs)
        for _ in range(10):
            assert mine.get_version(C, "i1") == 11
        assert hgets(theirs) - before == 10
    finally:
        mine.close()
        theirs.close()
        admin.acl_deluser(user)
        admin.close()
