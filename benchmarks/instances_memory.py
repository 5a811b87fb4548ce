"""Memory stays flat however many instances one process serves.

One process, one App on the SQLite store with ``Settings(snapshot_instances=B)``,
creates and serves N instances, one run each (init_state keeps the
instance's own id; the serve op returns it). The process's resident memory
(RSS, from /proc/self/statm, or ru_maxrss where there is no /proc) is
recorded at B/2, B, 2B, 4B, ... and N instances. Then runs on random cold
instances (their snapshot long dropped: served again from a full read of
their state) are timed against runs on one hot instance, interleaved, each
as a server handles a request: open the instance, run, close. Props differ
on every run, so the serve-result cache never answers; every served value
is checked to be the instance's own.

Run: ``python -m benchmarks.instances_memory [--quick] [--instances N]
[--bound B] [--samples S]``. The default is N=200,000, B=10,000.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import sys
import time
from typing import Any

from .common import bench_app, check, median, percentile, us


def rss_mib() -> float:
    """The process's resident memory now (peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def checkpoints(bound: int, instances: int) -> list[int]:
    """B/2, B, 2B, 4B, ... below N, and N."""
    points, n = [], max(1, bound // 2)
    while n < instances:
        points.append(n)
        n = bound if n < bound else n * 2
    return [*points, instances]


def _setup(owner: str) -> dict[str, Any]:
    return {"owner": owner, "notes": "x" * 200}


def _who(state: Any, props: Any) -> dict[str, Any]:
    return {"owner": state["owner"], "k": props["k"]}


def measure(instances: int, bound: int, samples: int, seed: int = 7) -> dict[str, Any]:
    rows: list[tuple[int, float, float]] = []
    with bench_app("sqlite", snapshot_instances=bound) as app:
        C = app.component("Owner")
        C.init_state(_setup)
        C.serve("who")(_who)
        calls = 0

        def serve(n: int) -> None:
            nonlocal calls
            calls += 1
            name = f"u{n}"
            inst = C(name, {"owner": name})
            got = inst.run("who", props={"k": calls})
            check(got == {"owner": name, "k": calls}, f"instance {name} served {got!r}")
            inst.close()

        started = time.perf_counter()
        made = 0
        gc.collect()
        base = rss_mib()
        for point in checkpoints(bound, instances):
            while made < point:
                serve(made)
                made += 1
            gc.collect()
            rows.append((made, rss_mib(), time.perf_counter() - started))
        check(len(app.store.list_instances("Owner")) == instances, "an instance is missing from the store")

        # Cold: instances served long ago (none of the last 2B), each once.
        rng = random.Random(seed)
        cold_pool = max(1, instances - 2 * bound)
        cold_ids = rng.sample(range(cold_pool), min(samples, cold_pool))
        hot = instances - 1
        serve(hot)
        cold_ns: list[int] = []
        hot_ns: list[int] = []
        clock = time.perf_counter_ns
        for n in cold_ids:
            t0 = clock()
            serve(n)
            cold_ns.append(clock() - t0)
            t0 = clock()
            serve(hot)
            hot_ns.append(clock() - t0)
    return {"base": base, "rows": rows, "cold": cold_ns, "hot": hot_ns}


def report(result: dict[str, Any], instances: int, bound: int) -> None:
    print(f"instances_memory: SQLite store, snapshot_instances={bound:,}, {instances:,} instances, one run each")
    print(f"{'instances':>10} {'RSS MiB':>9} {'vs at B':>8} {'elapsed s':>10}")
    at_bound = next((r[1] for r in result["rows"] if r[0] >= bound), result["rows"][-1][1])
    for made, rss, elapsed in result["rows"]:
        print(f"{made:>10,} {rss:>9.1f} {rss / at_bound:>7.2f}x {elapsed:>10.1f}")
    print(f"(RSS before the first instance: {result['base']:.1f} MiB)")
    cold, hot = result["cold"], result["hot"]
    c50, c99, h50, h99 = median(cold), percentile(cold, 99), median(hot), percentile(hot, 99)
    print(f"\nopen + run + close, {len(cold)} runs each, interleaved")
    print(f"{'':14} {'p50 µs':>9} {'p99 µs':>9}")
    print(f"{'cold instance':14} {us(c50):>9.0f} {us(c99):>9.0f}")
    print(f"{'hot instance':14} {us(h50):>9.0f} {us(h99):>9.0f}")
    print(f"{'cold / hot':14} {c50 / h50:>8.2f}x {c99 / h99:>8.2f}x")
    last = result["rows"][-1][1]
    print(
        f"\nRSS at {instances:,} instances is {last / at_bound:.2f}x RSS at {bound:,}; every served value was its own"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instances_memory", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (2,000 instances, B=250): seconds")
    parser.add_argument("--instances", type=int, default=None, help="N (default 200,000; 2,000 with --quick)")
    parser.add_argument("--bound", type=int, default=None, help="B (default 10,000; 250 with --quick)")
    parser.add_argument("--samples", type=int, default=None, help="cold and hot runs timed (2,000; 200 with --quick)")
    args = parser.parse_args(argv)
    instances = args.instances or (2_000 if args.quick else 200_000)
    bound = args.bound or (250 if args.quick else 10_000)
    samples = args.samples or (200 if args.quick else 2_000)
    if instances <= bound:
        parser.error(f"--instances ({instances}) must be more than --bound ({bound})")
    report(measure(instances, bound, samples), instances, bound)


if __name__ == "__main__":
    main()
