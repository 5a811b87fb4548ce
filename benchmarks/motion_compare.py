"""Motion 0.1.132 and Tidal side by side: the same workloads, in one run,
with a real Redis.

    python -m benchmarks.motion_compare [--quick] [--json out.json] [--markdown out.md]
                                        [--only WORKLOAD ...] [--systems motion,tidal-sqlite,...]

Every workload is the same code (``benchmarks/_motion_workloads.py``, written
against Motion's public API) run in a fresh process per system:

* ``motion``: Motion 0.1.132 from PyPI, in its own virtualenv
  (``benchmarks/.motion-venv``, made by :mod:`benchmarks.motion_env` when
  missing), on a throw-away ``redis-server`` started for this run;
* ``tidal-sqlite``: Tidal through its Motion-compatible API (``from tidal
  import Component``) on a fresh SQLite file;
* ``tidal-redis``: the same on the same Redis, when this checkout of Tidal has
  a ``redis://`` store (the column is left out otherwise);
* ``tidal-redis-cluster`` (only when named in ``--systems``): the same on a
  throw-away Redis Cluster of three masters on this machine
  (``redis://…?cluster=1``), to show what the cluster's routing costs
  against one server.

Both use their defaults (``update_task_type="thread"``). The driver computes
every median and percentile from the raw samples with the same code. A wrong
result on Tidal's side (a lost update, a stale read) or a Tidal workload
that crashes fails the run with exit status 1; Motion's lost or stale results
are reported as they are, since they are what is being compared. A Motion
workload that crashes is shown as ``error`` and the run exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import common, motion_env
from .motion_table import (
    LABELS,
    TITLES,
    WORKLOADS,
    build_rows,
    combine_rounds,
    markdown_table,
    print_table,
    round_ratio_notes,
)

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "_motion_workloads.py"
SYSTEMS = ("motion", "tidal-sqlite", "tidal-redis", "tidal-redis-cluster")
DEFAULT_SYSTEMS = SYSTEMS[:3]
"""The cluster starts three more servers: it runs only when asked for."""


def specs(quick: bool) -> dict[str, dict[str, int]]:
    """How much work each workload does (identical for every system)."""
    if quick:
        return {
            "serve": {"rounds": 1, "calls": 300, "warm": 50},
            "update": {"trials": 1, "updates": 500, "warm": 50},
            "update_process": {"trials": 1, "updates": 500, "warm": 50, "process": 1},
            "large_state": {"mb": 4, "writes": 5, "updates": 5, "warm": 2, "xproc_rounds": 3},
            "lifecycle": {"rounds": 1, "instances": 30, "warm": 3},
            "multiproc": {"procs": 2, "instances": 2, "increments": 30},
            "forked": {"trials": 3, "procs": 2, "updates": 150},
        }
    return {
        "serve": {"rounds": 3, "calls": 5_000, "warm": 500},
        "update": {"trials": 3, "updates": 5_000, "warm": 200},
        "update_process": {"trials": 3, "updates": 5_000, "warm": 200, "process": 1},
        "large_state": {"mb": 64, "writes": 40, "updates": 40, "warm": 3, "xproc_rounds": 20},
        "lifecycle": {"rounds": 1, "instances": 1_000, "warm": 20},
        "multiproc": {"procs": 4, "instances": 4, "increments": 250},
        "forked": {"trials": 7, "procs": 2, "updates": 150},
    }


# -- summaries of the workers' raw results ------------------------------------


def _lat(samples: Sequence[float], unit: Callable[[float], float]) -> tuple[float, float]:
    return unit(common.median(samples)), unit(common.percentile(samples, 99))


def summarise(workload: str, raw: dict[str, Any]) -> dict[str, float]:
    if workload == "serve":
        miss50, miss99 = _lat(raw["miss"], common.us)
        hit50, hit99 = _lat(raw["hit"], common.us)
        return {"miss_p50": miss50, "miss_p99": miss99, "hit_p50": hit50, "hit_p99": hit99}
    if workload in ("update", "update_process"):
        n = raw["updates"]
        return {
            "e2e": common.median(raw["e2e"]),
            "run_rate": common.median(raw["run_rate"]),
            "lost": max(n - f for f in raw["final"]),
        }
    if workload == "large_state":
        w50, w99 = _lat(raw["write"], common.ms)
        u50, u99 = _lat(raw["update"], common.ms)
        return {
            "write_p50": w50,
            "write_p99": w99,
            "update_p50": u50,
            "update_p99": u99,
            "update_lost": raw["update_n_expected"] - raw["update_n_after"],
            "xproc_first": common.ms(raw["xproc_first"]),
            "xproc_read_p50": common.ms(common.median(raw["xproc_read"])),
            "xproc_serve_p50": common.ms(common.median(raw["xproc_serve"])),
            "xproc_stale": raw["xproc_stale"],
        }
    if workload == "lifecycle":
        s = raw["samples"]
        p50, p99 = _lat(s, common.ms)
        return {"mean": common.ms(sum(s) / len(s)), "p50": p50, "p99": p99}
    if workload == "multiproc":
        expected = raw["expected_each"] * len(raw["observed"])
        observed = sum(raw["observed"].values())
        return {
            "expected": expected,
            "observed": observed,
            "lost": expected - observed,
            "rate": raw["updates"] / raw["flushed_s"],
            "rate_exit": raw["updates"] / raw["wall_s"],
        }
    if workload == "forked":
        return {
            "wall": common.ms(common.median(raw["wall"])),
            "first": common.ms(raw["wall"][0]),
            "lost": max(raw["expected"] - f for f in raw["final"]),
        }
    raise ValueError(workload)


def tidal_problems(workload: str, raw: dict[str, Any], summary: dict[str, float]) -> list[str]:
    """Why a Tidal result is wrong (lost, repeated or stale), if it is."""
    out = []
    if workload in ("update", "update_process"):
        n = raw["updates"]
        for final, version in zip(raw["final"], raw["version"], strict=True):
            if final != n or version != n + 1:
                out.append(f"counter {final} (version {version}) after {n} updates")
    elif workload == "large_state":
        if summary["update_lost"] != 0:
            out.append(f"n is {raw['update_n_after']} after run + flush, expected {raw['update_n_expected']}")
        if raw["xproc_stale"]:
            out.append(f"the second process read a stale value {raw['xproc_stale']} times")
    elif workload == "forked":
        for final in raw["final"]:
            if final != raw["expected"]:
                out.append(f"counter {final} after the children, expected {raw['expected']}")
    elif workload == "multiproc":
        for inst, got in raw["observed"].items():
            if got != raw["expected_each"]:
                out.append(f"{inst}: counter {got}, expected {raw['expected_each']}")
    return out


# -- running the worker ---------------------------------------------------------


@dataclass
class Outcome:
    raw: dict[str, Any] | None
    error: str | None
    seconds: float
    stderr_tail: str
    atexit_tracebacks: int


def run_worker(
    python: str, workload: str, spec: dict[str, Any], env: dict[str, str], cwd: Path, timeout: float
) -> Outcome:
    cmd = [python, str(WORKER), workload, json.dumps(spec)]
    err_path = cwd / f"{workload}.stderr"
    t0 = time.perf_counter()
    with open(err_path, "w+") as err:
        try:
            proc = subprocess.run(
                cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=cwd, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            err.seek(0)
            text = err.read()
            return Outcome(None, f"timed out after {timeout:.0f} s", time.perf_counter() - t0, text[-3000:], 0)
        err.seek(0)
        text = err.read()
    seconds = time.perf_counter() - t0
    atexit_tb = text.count("Exception ignored in atexit callback")
    result = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            break
    if result is None:
        return Outcome(None, f"exit status {proc.returncode}, no result", seconds, text[-3000:], atexit_tb)
    if "wrong" in result:
        return Outcome(None, f"wrong result: {result['wrong']}", seconds, text[-3000:], atexit_tb)
    if proc.returncode != 0:
        return Outcome(None, f"exit status {proc.returncode}", seconds, text[-3000:], atexit_tb)
    return Outcome({**spec, **result}, None, seconds, text[-3000:], atexit_tb)


_DROPPED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "BENCH_BACKEND")


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("MOTION_", "TIDAL_")) or name in _DROPPED:
            del env[name]
    env["PYTHONUNBUFFERED"] = "1"
    return env


def motion_env_vars(host: str, port: int, db: int = 0) -> dict[str, str]:
    """What Motion reads to find its Redis (``motion.utils.RedisParams``);
    it needs no API token or other setting to run instances locally."""
    return {
        "BENCH_BACKEND": "motion",
        "MOTION_REDIS_HOST": host,
        "MOTION_REDIS_PORT": str(port),
        "MOTION_REDIS_DB": str(db),
        "MOTION_ENV": "prod",
    }


def tidal_env_vars(store_url: str, home: Path) -> dict[str, str]:
    return {
        "BENCH_BACKEND": "tidal",
        "TIDAL_STORE": store_url,
        "TIDAL_HOME": str(home),
        "TIDAL_SECRET_KEY": secrets.token_hex(32),
        "PYTHONPATH": str(ROOT),
    }


def tidal_has_redis() -> bool:
    """Whether this checkout of Tidal can open ``redis://`` stores."""
    from tidal import stores

    return "redis" in stores.SCHEMES


def _test_servers() -> Any:
    """The test helpers' server module (``tests/servers.py``), which finds
    or installs redis-server and stops what it starts at exit."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import servers  # type: ignore[import-not-found]

    return servers


def start_redis() -> Any:
    """A throw-away redis-server."""
    return _test_servers().start_redis()


def start_redis_cluster() -> Any:
    """A throw-away Redis Cluster of three masters."""
    return _test_servers().start_redis_cluster()


def flush_cluster(cluster: Any) -> None:
    """Empty every node of the cluster (FLUSHALL on one node clears only its slots)."""
    for node in cluster.nodes:
        client = node.connect()
        try:
            client.flushall()
        finally:
            client.close()


# -- main -----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.motion_compare",
        description="Run the same workloads on Motion 0.1.132 (Redis) and on Tidal (SQLite, and Redis when "
        "Tidal has a redis:// store), in one run, and print one table. Makes benchmarks/.motion-venv "
        "(pip install motion-python==0.1.132 requests 'numpy<2') and starts a throw-away redis-server.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a minute or so, noisy numbers")
    parser.add_argument("--json", metavar="PATH", help="also write the results (and raw summaries) as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    parser.add_argument("--only", action="append", choices=WORKLOADS, help="run only this workload (repeatable)")
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: {','.join(DEFAULT_SYSTEMS)}; "
        "tidal-redis only if Tidal has it)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every workload this many times on each system, the systems taking turns; the table shows "
        "the median over rounds (the worst for exact counts) and notes list the per-round ratios (default 1)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds one workload may take on one system (default 1800)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SYSTEMS]
    if unknown:
        print(f"unknown system(s) {unknown}; choose from {SYSTEMS}", file=sys.stderr)
        return 2
    notes: list[str] = []
    if {"tidal-redis", "tidal-redis-cluster"} & set(wanted) and not tidal_has_redis():
        wanted = [s for s in wanted if not s.startswith("tidal-redis")]
        notes.append("Tidal redis columns left out: this checkout of Tidal has no redis:// store (tidal.stores).")
        print(f"note: {notes[-1]}", flush=True)
    systems = [s for s in SYSTEMS if s in wanted]
    workloads = [w for w in WORKLOADS if not args.only or w in args.only]
    sizes = specs(args.quick)
    command = "python -m benchmarks.motion_compare " + shlex.join(sys.argv[1:] if argv is None else list(argv))

    motion_info: dict[str, Any] | None = None
    if "motion" in systems:
        print("== Motion venv", flush=True)
        motion_info = motion_env.ensure()
        print(f"   {motion_env.venv_python()}: {motion_info}", flush=True)
    server: Any = None
    if "motion" in systems or "tidal-redis" in systems:
        server = start_redis()
        import redis

        admin = redis.Redis(host=server.host, port=server.port)
        redis_version = admin.info("server")["redis_version"]
        print(f"== redis-server {redis_version} on {server.host}:{server.port} ({server.binary})", flush=True)
    cluster: Any = None
    if "tidal-redis-cluster" in systems:
        cluster = start_redis_cluster()
        print(f"== Redis Cluster of {len(cluster.nodes)} masters at {cluster.url()}", flush=True)

    summaries: dict[str, dict[str, dict[str, float]]] = {s: {} for s in systems}
    raws: dict[str, dict[str, Any]] = {s: {} for s in systems}
    timings: dict[str, dict[str, float]] = {s: {} for s in systems}
    failed: dict[str, dict[str, str]] = {s: {} for s in systems}
    """system -> workload -> what its cells show instead of numbers ("error" or "WRONG")."""
    errors: list[str] = []
    started = time.perf_counter()
    by_round: dict[str, dict[str, list[dict[str, float]]]] = {s: {} for s in systems}
    """system -> workload -> its summary in each round."""
    try:
        for w, rnd, system in (
            (w, r, s) for w in workloads for r in range(args.rounds) for s in systems
        ):  # rounds interleave the systems, so that a slow spell of a shared machine hits all of them
            if system == systems[0] and rnd == 0:
                print(f"== {w}: {TITLES[w]} {sizes[w]}", flush=True)
            if system == systems[0] and args.rounds > 1:
                print(f"-- round {rnd + 1} of {args.rounds}", flush=True)
            if w in failed[system]:
                continue
            if server is not None:
                admin.flushall()
            if cluster is not None:
                flush_cluster(cluster)
            with common.scratch_dir("tidal-cmp-") as folder:
                env = _base_env()
                if system == "motion":
                    python = str(motion_env.venv_python())
                    env.update(motion_env_vars(server.host, server.port))
                else:
                    python = sys.executable
                    db = (folder / "bench.db").resolve()
                    if system == "tidal-sqlite":
                        store = f"sqlite:///{db}"
                    elif system == "tidal-redis":
                        store = server.url(0)
                    else:
                        store = cluster.url() + "?cluster=1"
                    env.update(tidal_env_vars(store, folder / "home"))
                out = run_worker(python, w, sizes[w], env, folder, args.timeout)
            timings[system][w] = timings[system].get(w, 0.0) + out.seconds
            if out.atexit_tracebacks and system == "motion" and rnd == 0:
                notes.append(
                    f"{w}: Motion printed {out.atexit_tracebacks} tracebacks at exit (each instance registers "
                    "shutdown with atexit, and a second shutdown raises AttributeError)."
                )
            if out.raw is None:
                failed[system][w] = "error"
                errors.append(f"{LABELS[system]} {w}: {out.error}")
                print(f"   {LABELS[system]}: FAILED ({out.error}); stderr tail:\n{out.stderr_tail}", flush=True)
                continue
            summary = summarise(w, out.raw)
            if system != "motion":
                problems = tidal_problems(w, out.raw, summary)
                if problems:
                    failed[system][w] = "WRONG"
                    errors.append(f"{LABELS[system]} {w}: WRONG RESULT: {'; '.join(problems)}")
                    print(f"   {LABELS[system]}: WRONG RESULT: {'; '.join(problems)}", flush=True)
                    continue
            by_round[system].setdefault(w, []).append(summary)
            summaries[system][w] = combine_rounds(w, by_round[system][w])
            raws[system].setdefault(w, []).append(
                {k: v for k, v in out.raw.items() if not isinstance(v, list) or len(v) <= 20}
            )
            shown = ", ".join(
                f"{k}={int(v):,}" if float(v).is_integer() else f"{k}={common.fmt(v)}" for k, v in summary.items()
            )
            print(f"   {LABELS[system]} ({out.seconds:.1f}s): {shown}", flush=True)
    finally:
        if server is not None:
            admin.close()
            server.stop()
        if cluster is not None:
            cluster.stop()

    elapsed = time.perf_counter() - started
    rows = build_rows(summaries, systems)
    mode = "quick" if args.quick else "full"
    if args.rounds > 1:
        notes.extend(round_ratio_notes(rows, by_round))
    print_table(rows, systems, failed, f"Motion 0.1.132 vs Tidal, same workloads ({mode}, {elapsed:.0f}s)")
    for note in notes:
        print(f"note: {note}")
    if args.json:
        data = {
            "command": command,
            "quick": args.quick,
            "elapsed_s": elapsed,
            "systems": systems,
            "sizes": {w: sizes[w] for w in workloads},
            "machine": common.machine_info(),
            "motion_venv": motion_info,
            "redis_version": redis_version if server is not None else None,
            "errors": errors,
            "notes": notes,
            "seconds": timings,
            "rows": [{**asdict(r), "vs_motion": {s: r.vs_motion(s) for s in systems if s != "motion"}} for r in rows],
            "rounds": args.rounds,
            "summaries": summaries,
            "summaries_by_round": by_round,
            "raw": raws,
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(markdown_table(rows, systems, failed))
        print(f"wrote {args.markdown}")
    tidal_failed = sorted(f"{LABELS[s]} {w}" for s in systems if s != "motion" for w in failed[s])
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if tidal_failed:
        print(f"FAILED (Tidal): {', '.join(tidal_failed)}", file=sys.stderr)
        return 1
    if failed.get("motion"):
        print(f"Motion could not run: {', '.join(failed['motion'])}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
