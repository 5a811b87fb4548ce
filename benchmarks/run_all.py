"""Run every benchmark workload and print one table.

    python -m benchmarks.run_all [--store sqlite|memory|all] [--quick] [--json out.json]
                                 [--markdown out.md] [--only WORKLOAD ...]

Each workload measures its plain-Python floor once, then the same work
through Tidal on each store (SQLite, the default store, first). A workload
whose result is wrong (a lost update, a stale read) fails the run with exit
status 1; its numbers are not reported.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from types import ModuleType

from . import common, large_state, lifecycle, relations, runs_log, serve, update

WORKLOADS: list[ModuleType] = [serve, update, large_state, lifecycle, relations, runs_log]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=[*common.STORES, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, noisy numbers")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    parser.add_argument(
        "--only",
        action="append",
        choices=[w.NAME for w in WORKLOADS],
        help="run only this workload (repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stores = list(common.STORES) if args.store == "all" else [args.store]
    cfg = common.Config(quick=args.quick)
    workloads = [w for w in WORKLOADS if not args.only or w.NAME in args.only]
    command = "python -m benchmarks.run_all " + shlex.join(sys.argv[1:] if argv is None else list(argv))

    rows: list[common.Row] = []
    failed: list[str] = []
    started = time.perf_counter()
    for w in workloads:
        print(f"== {w.NAME}: {w.TITLE}", flush=True)
        t0 = time.perf_counter()
        try:
            floor = w.baseline(cfg)
            print(f"   floor (plain Python) measured in {time.perf_counter() - t0:.1f}s", flush=True)
            per_store: dict[str, dict[str, float]] = {}
            for store in stores:
                t1 = time.perf_counter()
                per_store[store] = w.run(store, cfg)
                print(f"   {store} measured in {time.perf_counter() - t1:.1f}s", flush=True)
        except Exception as exc:
            kind = "WRONG RESULT" if isinstance(exc, common.BenchmarkFailure) else "ERROR"
            print(f"   {kind} in {w.NAME}: {exc}", file=sys.stderr, flush=True)
            traceback.print_exc()
            failed.append(w.NAME)
            continue
        rows += common.collect(w.NAME, w.METRICS, floor, per_store)

    elapsed = time.perf_counter() - started
    if rows:
        mode = "quick" if args.quick else "full"
        common.print_table(rows, stores, title=f"Tidal benchmarks ({mode}, {elapsed:.0f}s)")
    if args.json:
        extra = {"command": command, "quick": args.quick, "elapsed_s": elapsed, "failed": failed}
        common.write_json(args.json, rows, stores, extra)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(common.markdown_table(rows, stores))
        print(f"wrote {args.markdown}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
