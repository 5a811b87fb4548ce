"""The store contract's shared rate limits (``Store.rate_take``, GCRA, see
tidal/stores/rates.py), run against every store of
``test_contract.STORE_FACTORIES``, a real Redis and Redis Cluster included."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tidal.stores import Store, from_url
from tidal.stores.memory import MemoryStore
from tidal.stores.rates import PURGE_EVERY
from tidal.stores.redis import RedisStore
from tidal.stores.sqlite import SQLiteStore

from .test_contract import STORE_FACTORIES

SLOW = 60.0  # a period long enough that nothing refills during a test's few calls


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = STORE_FACTORIES[request.param](request, tmp_path)
    yield s
    s.close()


def test_takes_up_to_the_limit_then_says_how_long_to_wait(store: Store) -> None:
    assert [store.rate_take("m", 1, 5, SLOW) for _ in range(5)] == [0.0] * 5
    wait = store.rate_take("m", 1, 5, SLOW)
    # One unit comes back every period / limit = 12 s.
    assert 11.0 < wait <= 12.0
    assert 0 < store.rate_take("m", 1, 5, SLOW) <= wait


def test_sleeping_the_wait_is_enough_and_needed(store: Store) -> None:
    limit, period = 5, 0.5
    assert [store.rate_take("m", 1, limit, period) for _ in range(limit)] == [0.0] * limit
    wait = store.rate_take("m", 1, limit, period)
    assert 0 < wait <= period / limit + 1e-6
    # Not before: asked again at once, it is still refused, for no longer.
    again = store.rate_take("m", 1, limit, period)
    assert 0 < again <= wait
    time.sleep(again)
    assert store.rate_take("m", 1, limit, period) == 0.0
    # That took the unit that came back: the bucket is empty again.
    assert store.rate_take("m", 1, limit, period) > 0


def test_a_refused_take_takes_nothing(store: Store) -> None:
    assert store.rate_take("m", 1, 2, SLOW) == 0.0
    assert store.rate_take("m", 2, 2, SLOW) > 0  # one unit left, two asked
    assert store.rate_take("m", 1, 2, SLOW) == 0.0  # that one unit is still there
    assert store.rate_take("m", 1, 2, SLOW) > 0


def test_amounts_take_tokens(store: Store) -> None:
    limit = 1000  # tokens a minute: one back every 60 ms
    assert store.rate_take("tpm", 600, limit, SLOW) == 0.0
    wait = store.rate_take("tpm", 500, limit, SLOW)
    assert 5.9 < wait <= 6.0  # 100 tokens short
    assert store.rate_take("tpm", 400, limit, SLOW) == 0.0
    assert 0.05 < store.rate_take("tpm", 1, limit, SLOW) <= 0.06
    assert store.rate_take("tpm", 0, limit, SLOW) == 0.0  # nothing asked, nothing to wait for


def test_a_full_bucket_grants_the_whole_limit_in_one_take(store: Store) -> None:
    assert store.rate_take("tpm", 1000, 1000, SLOW) == 0.0
    assert store.rate_take("tpm", 1, 1000, SLOW) > 0


def test_buckets_are_independent(store: Store) -> None:
    # Names that the Redis key scheme escapes must not collide either.
    names = ["gpt:rpm", "gpt%3Arpm", "{gpt}:rpm", "other"]
    for name in names:
        assert store.rate_take(name, 2, 2, SLOW) == 0.0
        assert store.rate_take(name, 1, 2, SLOW) > 0


def test_a_bucket_fills_up_again(store: Store) -> None:
    limit, period = 3, 0.3
    assert [store.rate_take("m", 1, limit, period) for _ in range(limit)] == [0.0] * limit
    time.sleep(period)
    assert [store.rate_take("m", 1, limit, period) for _ in range(limit)] == [0.0] * limit


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((1, 0, 1.0), "limit"),
        ((1, -5, 1.0), "limit"),
        ((1, math.nan, 1.0), "limit"),
        ((1, math.inf, 1.0), "limit"),
        ((1, 5, 0.0), "period"),
        ((1, 5, -1.0), "period"),
        ((1, 5, math.nan), "period"),
        ((-1, 5, 1.0), "amount"),
        ((math.nan, 5, 1.0), "amount"),
        ((6, 5, 1.0), "amount 6 is more than the bucket's limit"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(
    store: Store, args: tuple[float, float, float], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        store.rate_take("m", *args)
    assert store.rate_take("m", 5, 5, SLOW) == 0.0  # and nothing was taken


def _stored_buckets(store: Store, names: list[str]) -> int:
    if isinstance(store, MemoryStore):
        return len(set(store._rates) & set(names))
    if isinstance(store, SQLiteStore):
        with contextlib.closing(sqlite3.connect(store.path)) as conn:
            rows = conn.execute("SELECT bucket FROM tidal_rates").fetchall()
        return len({row[0] for row in rows} & set(names))
    assert isinstance(store, RedisStore)
    return sum(int(store.client.exists(store.keys.rate(name))) for name in names)


def test_full_buckets_are_forgotten(store: Store) -> None:
    names = [f"user-{n}" for n in range(20)]
    for name in names:
        assert store.rate_take(name, 1, 1, 0.5) == 0.0
    assert _stored_buckets(store, names) == 20
    time.sleep(0.6)  # every bucket is full again
    if not isinstance(store, RedisStore):  # Redis keys expire; the others purge every PURGE_EVERY takes
        for _ in range(PURGE_EVERY):
            store.rate_take("busy", 1, 1e9, 0.05)
    assert _stored_buckets(store, names) == 0


# -- many processes on one bucket ------------------------------------------------------

LIMIT, PERIOD, RUN = 200, 1.0, 2.0
"""The shared bucket of the test below, and how long its takers hammer it."""


def _hammer(url: str, start: Any, go: Any, results: Any) -> None:
    """A taker in a process of its own (see :func:`_take`)."""
    store = from_url(url)
    try:
        store.rate_take("warm-up", 1, 1, 1.0)  # connections open before the start
        _take(store, start, go, results)
    finally:
        store.close()


def _take(store: Store, start: Any, go: Any, results: Any) -> None:
    """Say it is ready, then from ``go`` until ``RUN`` seconds after
    ``start`` take one unit at a time as fast as it can; put (units
    granted, when the last grant returned)."""
    results.put(None)
    go.wait()
    end = start.value + RUN
    granted, last = 0, 0.0
    while time.time() < end:
        if store.rate_take("shared", 1, LIMIT, PERIOD) == 0.0:
            granted += 1
            last = time.time()
    results.put((granted, last))


@pytest.mark.slow
def test_four_processes_share_one_budget(store: Store) -> None:
    """Four takers hammering one bucket get, together, what GCRA allows over
    the run (the full bucket, then ``LIMIT`` per ``PERIOD``) within 5%, and
    never more. Processes (spawned) on the shared stores, threads on memory."""
    ctx = multiprocessing.get_context("spawn")
    start, go, results = ctx.Value("d", 0.0), ctx.Event(), ctx.Queue()
    takers: list[Any]
    if store.shared:
        takers = [ctx.Process(target=_hammer, args=(store.url, start, go, results)) for _ in range(4)]
    else:
        # MemoryStore is one process's: threads share it instead.
        assert isinstance(store, MemoryStore)
        takers = [threading.Thread(target=_take, args=(store, start, go, results)) for _ in range(4)]
    for taker in takers:
        taker.start()
    # From the start on, the bucket refills for takers that are all there.
    assert [results.get(timeout=60) for _ in takers] == [None] * len(takers)
    start.value = time.time()
    go.set()
    got = [results.get(timeout=60) for _ in takers]
    for taker in takers:
        taker.join(timeout=30)
    granted = sum(n for n, _ in got)
    last = max(t for _, t in got)
    # Every grant happened between the start and the last grant's return.
    bound = LIMIT + LIMIT * (last - start.value) / PERIOD
    assert granted <= bound
    assert granted >= 0.95 * bound, (granted, bound)
    assert all(n > 0 for n, _ in got)  # each taker got some
