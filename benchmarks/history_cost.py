"""What state history costs a commit: the same store commits with
``history_versions`` 0 (off) and 5 (the default), in one process, rounds
alternating so that the machine's noise hits both alike.

* small: a commit that writes an 8-byte key of an instance that also holds
  a 1 MB key (which the commit must not copy);
* big: a commit that rewrites a 64 MB key (16 MB with ``--quick``), whose
  previous value then moves into the history.

Run: ``python -m benchmarks.history_cost [--quick]``. Prints the median of
each configuration's round medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tidal.stores import Store
from tidal.stores.memory import MemoryStore
from tidal.stores.sqlite import SQLiteStore


def _store(kind: str, folder: Path, keep: int) -> Store:
    store: Store = SQLiteStore(folder / "history.db") if kind == "sqlite" else MemoryStore()
    store.history_versions = keep
    return store


def small_commit_us(kind: str, keep: int, n: int) -> float:
    """Median µs of ``n`` commits of one small key."""
    with tempfile.TemporaryDirectory() as tmp:
        store = _store(kind, Path(tmp), keep)
        store.create_instance("C", "i", {"n": b"0", "big": b"x" * (1 << 20)})
        version = store.get_version("C", "i")
        times = []
        for i in range(n):
            start = time.perf_counter_ns()
            version = store.commit("C", "i", {"n": i.to_bytes(8, "little")}, expected_version=version)
            times.append(time.perf_counter_ns() - start)
        store.close()
    return statistics.median(times[n // 10 :]) / 1000


def big_commit_ms(kind: str, keep: int, size: int, n: int) -> float:
    """Median ms of ``n`` commits that rewrite a ``size``-byte key."""
    with tempfile.TemporaryDirectory() as tmp:
        store = _store(kind, Path(tmp), keep)
        big = os.urandom(size)
        store.create_instance("C", "i", {"n": b"0", "big": big})
        times = []
        for i in range(n):
            value = big[i + 1 :] + big[: i + 1]
            start = time.perf_counter()
            store.commit("C", "i", {"big": value})
            times.append((time.perf_counter() - start) * 1000)
        store.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.history_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, noisy numbers")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    commits = 500 if args.quick else 3000
    size = (16 if args.quick else 64) << 20
    print(f"{'store':8} {'commit':28} {'history off':>12} {'history 5':>12} {'extra':>10}")
    for kind in ("sqlite", "memory"):
        small: dict[int, list[float]] = {0: [], 5: []}
        big: dict[int, list[float]] = {0: [], 5: []}
        for _ in range(args.rounds):
            for keep in (0, 5):
                small[keep].append(small_commit_us(kind, keep, commits))
                big[keep].append(big_commit_ms(kind, keep, size, 3))
        off, on = statistics.median(small[0]), statistics.median(small[5])
        print(f"{kind:8} {'small key (8 B), p50':28} {off:9.1f} µs {on:9.1f} µs {on - off:+7.1f} µs")
        off, on = statistics.median(big[0]), statistics.median(big[5])
        label = f"rewrite {size >> 20} MB key, p50"
        print(f"{kind:8} {label:28} {off:9.0f} ms {on:9.0f} ms {on - off:+7.0f} ms")


if __name__ == "__main__":
    main()
