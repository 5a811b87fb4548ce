"""Shared rate limits (``Store.rate_take``): how exactly processes sharing a
bucket keep to its budget, and what one take costs.

    python -m benchmarks.rate_limit [--stores sqlite redis] [--limit 500] [--period 2.0] [--run 6.0]
                                    [--processes 4] [--calls 5000] [--redis URL] [--quick] [--json out.json]

Accuracy: ``--processes`` spawned processes (each opens the store from its
URL) share one bucket of ``--limit`` units per ``--period`` seconds. They
start together once all are ready (start-up is not timed) and take one unit
at a time for ``--run`` seconds, in two ways: *hammer*, calling again at once
after a refusal, and *paced*, sleeping the wait a refusal returns (what a
model client does). The bucket starts full, so the budget over the span from
the start to the last grant is ``limit * (1 + span / period)``: the error is
what was granted against that. More than the budget is a wrong result and
fails the run.

Cost: in this process, the median of ``--calls`` timed calls that are granted
(a bucket with room to spare), and of calls that are refused (an empty
bucket); and the median take, granted or not, inside the hammering processes,
which contend for the bucket.

Stores: ``sqlite`` (a file in a scratch folder), ``redis`` (a private
``redis-server`` unless ``--redis URL``), ``redis-cluster`` (a private
cluster of three masters, the test helpers'), ``memory`` (threads of this
process instead of processes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tidal.stores import Store, from_url

from .common import BenchmarkFailure, check, machine_info, median, scratch_dir, time_calls, us
from .workers_scaling import private_cluster, private_redis

KINDS = ("sqlite", "redis", "redis-cluster", "memory")
MODES = ("hammer", "paced")


def _take(store: Store, bucket: str, limit: float, period: float, paced: bool, stop: Any, go: Any, out: Any) -> None:
    """One taker: say it is ready, wait for ``go``, take one unit at a time
    until the time in ``stop``; put (granted, last grant's return time,
    median take ns)."""
    out.put(None)
    go.wait()
    end = stop.value
    granted, last = 0, 0.0
    samples: list[int] = []
    clock = time.perf_counter_ns
    while time.time() < end:
        t0 = clock()
        wait = store.rate_take(bucket, 1, limit, period)
        samples.append(clock() - t0)
        if wait == 0.0:
            granted += 1
            last = time.time()
        elif paced:
            time.sleep(min(wait, max(0.0, end - time.time())))
    out.put((granted, last, median(samples) if samples else 0.0))


def _taker_process(
    url: str, bucket: str, limit: float, period: float, paced: bool, stop: Any, go: Any, out: Any
) -> None:
    store = from_url(url)
    try:
        store.rate_take(bucket + ":warm-up", 1, 1, 1.0)  # connections open before the start
        _take(store, bucket, limit, period, paced, stop, go, out)
    finally:
        store.close()


def accuracy(store: Store, processes: int, limit: float, period: float, run: float, paced: bool) -> dict[str, float]:
    """One run of ``processes`` takers on a fresh bucket (see the module docs)."""
    ctx = multiprocessing.get_context("spawn")
    stop, go, out = ctx.Value("d", 0.0), ctx.Event(), ctx.Queue()
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    takers: list[Any]
    args = (bucket, limit, period, paced, stop, go, out)
    if store.shared:
        takers = [ctx.Process(target=_taker_process, args=(store.url, *args)) for _ in range(processes)]
    else:
        takers = [threading.Thread(target=_take, args=(store, *args)) for _ in range(processes)]
    for taker in takers:
        taker.start()
    for _ in takers:
        check(out.get(timeout=120) is None, "a taker did not start")
    began = time.time()
    stop.value = began + run
    go.set()
    got = [out.get(timeout=run + 120) for _ in takers]
    for taker in takers:
        taker.join(timeout=30)
    granted = sum(g for g, _, _ in got)
    last = max(t for _, t, _ in got)
    allowed = limit * (1 + (last - began) / period)
    check(granted <= allowed + 1e-6, f"{granted} granted, more than the {allowed:.1f} the bucket allows")
    return {
        "granted": granted,
        "allowed": allowed,
        "error_pct": 100 * (granted - allowed) / allowed,
        "take_contended_us": us(median([m for _, _, m in got])),
    }


def cost(store: Store, calls: int) -> dict[str, float]:
    """Median µs of one granted take, and of one refused take."""
    roomy, empty = f"cost-{uuid.uuid4().hex[:8]}", f"cost-{uuid.uuid4().hex[:8]}"
    granted = time_calls(lambda i: store.rate_take(roomy, 1, 1e12, 1.0), calls, warm=200)
    store.rate_take(empty, 1, 1, 3600.0)
    refused = time_calls(lambda i: store.rate_take(empty, 1, 1, 3600.0), calls, warm=200)
    return {"granted_us": us(median(granted)), "refused_us": us(median(refused))}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rate_limit", description=__doc__.split("\n")[0])
    parser.add_argument("--stores", nargs="+", choices=KINDS, default=["sqlite", "redis"])
    parser.add_argument("--limit", type=float, default=500, help="units per period")
    parser.add_argument("--period", type=float, default=2.0, help="seconds")
    parser.add_argument("--run", type=float, default=6.0, help="seconds the takers run")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--calls", type=int, default=5000, help="timed calls per cost figure")
    parser.add_argument("--redis", metavar="URL", help="a Redis server to use (default: start a private one)")
    parser.add_argument("--quick", action="store_true", help="a 1 s run of 0.5 s periods, 500 calls: a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.period, args.run, args.calls = 0.5, 1.0, 500
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"{args.processes} takers on one bucket of {args.limit:g} per {args.period:g} s for {args.run:g} s "
        f"(a full bucket, then the rate: {args.limit * (1 + args.run / args.period):,.0f} at most); "
        f"cost: median of {args.calls} calls",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(scratch_dir("tidal-bench-rate-"))
        namespace = f"bench-rate-{uuid.uuid4().hex[:8]}"
        urls: dict[str, Callable[[], str]] = {
            "memory": lambda: "memory://",
            "sqlite": lambda: f"sqlite:///{folder.resolve() / 'rate.db'}",
            "redis": lambda: (args.redis or stack.enter_context(private_redis(folder))) + f"?namespace={namespace}",
            "redis-cluster": lambda: stack.enter_context(private_cluster())[0] + f"?namespace={namespace}&cluster=1",
        }
        for kind in args.stores:
            store = from_url(urls[kind]())
            try:
                row: dict[str, Any] = {"store": kind, **cost(store, args.calls)}
                for mode in MODES:
                    r = accuracy(store, args.processes, args.limit, args.period, args.run, paced=mode == "paced")
                    row[mode] = r
                    print(
                        f"  {kind:<13} {mode:<6}: {r['granted']:,} granted of {r['allowed']:,.1f} allowed "
                        f"({r['error_pct']:+.2f}%), a contended take {r['take_contended_us']:.0f} us",
                        flush=True,
                    )
                rows.append(row)
            finally:
                store.close()
    print(f"\n{'store':<13}  {'hammer error':>12}  {'paced error':>11}  {'granted take':>12}  {'refused take':>12}")
    for row in rows:
        print(
            f"{row['store']:<13}  {row['hammer']['error_pct']:>+11.2f}%  {row['paced']['error_pct']:>+10.2f}%  "
            f"{row['granted_us']:>9.1f} us  {row['refused_us']:>9.1f} us"
        )
    if args.json:
        data = {
            "limit": args.limit,
            "period": args.period,
            "run": args.run,
            "processes": args.processes,
            "results": rows,
            "machine": machine_info(),
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkFailure as exc:
        print(f"WRONG RESULT: {exc}", file=sys.stderr)
        sys.exit(1)
