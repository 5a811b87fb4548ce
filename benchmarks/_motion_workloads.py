"""The side-by-side workloads, written once against Motion's public API.

:mod:`benchmarks.motion_compare` runs this file as a script, one workload per
process:

* for Motion, with the Motion venv's interpreter (``benchmarks/.motion-venv``,
  see :mod:`benchmarks.motion_env`), ``BENCH_BACKEND=motion`` and Motion's
  Redis settings (``MOTION_REDIS_HOST`` / ``MOTION_REDIS_PORT`` /
  ``MOTION_REDIS_DB``);
* for Tidal, with the project's interpreter, ``BENCH_BACKEND=tidal`` and
  ``TIDAL_STORE`` / ``TIDAL_HOME`` / ``TIDAL_SECRET_KEY``: the same code,
  through Tidal's Motion-compatible API (``from tidal import Component``, the
  default app).

It imports nothing from the project besides the backend, so that it runs in
the Motion venv unchanged. Components are defined at module level, as Motion
requires of update ops (its ``update`` decorator checks that the calling frame
is a module), and every entry point is under ``if __name__ == "__main__"``.

    python _motion_workloads.py WORKLOAD 'JSON spec'

prints progress on stderr and, as its last stdout line, ``RESULT {json}``:
raw nanosecond samples and counts. The driver computes medians and
percentiles from them with the same code for every system, and decides what
is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

BACKEND = os.environ.get("BENCH_BACKEND", "motion")
if BACKEND == "motion":
    from motion import Component
elif BACKEND == "tidal":
    from tidal import Component
else:  # pragma: no cover - a driver bug
    raise SystemExit(f"BENCH_BACKEND must be motion or tidal, not {BACKEND!r}")

clock = time.perf_counter_ns


# -- components (module level: Motion requires it of update ops) ------------

Serve = Component("CmpServe")


@Serve.init_state
def serve_setup():  # type: ignore[no-untyped-def]
    return {"n": 1}


@Serve.serve("get")
def serve_get(state, props):  # type: ignore[no-untyped-def]
    return int(state["n"] + props["k"])


Counter = Component("CmpCounter")


@Counter.init_state
def counter_setup():  # type: ignore[no-untyped-def]
    return {"n": 0}


@Counter.update("inc")
def counter_inc(state, props):  # type: ignore[no-untyped-def]
    return {"n": state["n"] + 1}


Big = Component("CmpBig")


@Big.init_state
def big_setup(mb):  # type: ignore[no-untyped-def]
    import numpy as np

    return {"n": 0, "big": np.arange(mb * 1024 * 1024 // 8, dtype=np.float64)}


@Big.serve("get")
def big_get(state, props):  # type: ignore[no-untyped-def]
    return [int(state["n"]), float(state["big"][-1]), props["r"]]


@Big.update("bump")
def big_bump(state, props):  # type: ignore[no-untyped-def]
    return {"n": state["n"] + 1}


Session = Component("CmpSession")


@Session.init_state
def session_setup():  # type: ignore[no-untyped-def]
    return {"n": 0, "history": []}


@Session.serve("get")
def session_get(state, props):  # type: ignore[no-untyped-def]
    return int(state["n"] + props["k"])


@Session.update("inc")
def session_inc(state, props):  # type: ignore[no-untyped-def]
    return {"n": state["n"] + 1}


# -- helpers ----------------------------------------------------------------


class WrongResult(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise WrongResult(message)


def log(message: str) -> None:
    print(f"[{BACKEND}] {message}", file=sys.stderr, flush=True)


def time_calls(fn: Any, n: int, *, start: int = 0, warm: int = 0) -> list[int]:
    """Nanoseconds of each of ``n`` calls ``fn(i)``, after ``warm`` untimed
    calls; ``i`` counts up from ``start`` (as benchmarks.common.time_calls)."""
    import gc

    for i in range(start, start + warm):
        fn(i)
    first = start + warm
    samples = [0] * n
    gc.collect()
    for j in range(n):
        t0 = clock()
        fn(first + j)
        samples[j] = clock() - t0
    return samples


def tidal_cache() -> Any:
    """Tidal's local serve cache (hit and miss counters), or None on Motion."""
    if BACKEND != "tidal":
        return None
    import tidal

    return tidal.default_app().cache


def child(workload: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    """This script, run again by the same interpreter with the same environment."""
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), workload, json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


# -- workloads ----------------------------------------------------------------


def serve(spec: dict[str, Any]) -> dict[str, Any]:
    """Cache miss (new props every call) and cache hit (the same props) of a serve-only flow."""
    rounds, n, warm = spec["rounds"], spec["calls"], spec["warm"]
    inst = Serve(instance_id="serve-1")
    cache = tidal_cache()
    miss: list[int] = []
    hit: list[int] = []
    next_k = 10
    for _ in range(rounds):
        before = cache.misses if cache is not None else 0
        miss += time_calls(lambda i: inst.run("get", props={"k": i}), n, start=next_k, warm=warm)
        next_k += n + warm
        if cache is not None:
            check(cache.misses - before == n + warm, "calls with new props did not all miss the cache")
        before = cache.hits if cache is not None else 0
        hit += time_calls(lambda i: inst.run("get", props={"k": 1}), n, warm=warm)
        if cache is not None:
            check(cache.hits - before >= n + warm - 1, "calls with the same props did not hit the cache")
    check(inst.run("get", props={"k": next_k}) == next_k + 1, "serve returned a wrong result")
    check(inst.run("get", props={"k": 1}) == 2, "cached serve returned a wrong result")
    inst.shutdown()
    return {"miss": miss, "hit": hit}


def update(spec: dict[str, Any]) -> dict[str, Any]:
    """N runs of an update-only flow on one instance, then flush_update; the
    counter it ends at (the driver compares it with N). Each trial uses a new
    instance, after a warmup on another one."""
    trials, n = spec["trials"], spec["updates"]
    task_type = "process" if spec.get("process") else "thread"
    out: dict[str, list[float]] = {"e2e": [], "run_rate": [], "final": [], "version": []}
    # Warm up (imports, connections, the update task's first start) on another instance.
    warm = Counter(instance_id="counter-warmup", update_task_type=task_type)
    for i in range(spec["warm"]):
        warm.run("inc", props={"i": i})
    warm.flush_update("inc")
    warm.shutdown()
    for t in range(trials):
        inst = Counter(instance_id=f"counter-{t}", update_task_type=task_type)
        t0 = time.perf_counter()
        for i in range(n):
            inst.run("inc", props={"i": i})
        t1 = time.perf_counter()
        inst.flush_update("inc")
        t2 = time.perf_counter()
        final = inst.read_state("n")
        out["e2e"].append(n / (t2 - t0))
        out["run_rate"].append(n / (t1 - t0))
        out["final"].append(final)
        out["version"].append(inst.get_version())
        log(f"update trial {t}: {n / (t2 - t0):,.0f} updates/s, counter {final} of {n}")
        inst.shutdown()
    return out


class Reader:
    """The second process of the large-state workload, driven line by line."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.proc = child("xproc-reader", spec)

    def ask(self, line: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        reply = self.proc.stdout.readline().split()
        if not reply or reply[0] != "ok":
            raise WrongResult(f"second process answered {reply!r} to {line!r} (its stderr is above)")
        return reply[1:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit 0\n")
                self.proc.stdin.flush()
                self.proc.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def large_state(spec: dict[str, Any]) -> dict[str, Any]:
    """A small-key commit next to a ``mb`` MB array: write_state, run +
    flush_update, and a second process's next read after each commit."""
    mb = spec["mb"]
    t0 = clock()
    inst = Big(instance_id="big-1", init_state_params={"mb": mb})
    create_ns = clock() - t0
    big = inst.read_state("big")
    check(big.nbytes == mb * 1024 * 1024, f"big holds {big.nbytes} bytes")
    del big
    log(f"large_state: instance with {mb} MB created in {create_ns / 1e9:.2f} s")

    write = time_calls(lambda i: inst.write_state({"n": i}), spec["writes"], warm=spec["warm"])
    last = spec["warm"] + spec["writes"] - 1
    check(inst.read_state("n") == last, f"n is {inst.read_state('n')} after writing {last}")
    log("large_state: write_state done")

    def bump(i: int) -> None:
        inst.run("bump", props={"i": i})
        inst.flush_update("bump")

    before = inst.read_state("n")
    upd = time_calls(bump, spec["updates"], warm=spec["warm"])
    after = inst.read_state("n")
    expected = before + spec["updates"] + spec["warm"]
    log(f"large_state: run + flush_update done (n {before} -> {after}, expected {expected})")

    reader = Reader({"mb": mb})
    times: dict[str, list[int]] = {"read": [], "serve": []}
    stale = 0
    try:
        first_ns, n_seen = (int(x) for x in reader.ask(""))
        check(n_seen == inst.read_state("n"), f"second process saw n={n_seen} at start")
        value = 1_000_000
        for r in range(2 * spec["xproc_rounds"]):
            value += 1
            inst.write_state({"n": value})
            what = "read" if r % 2 == 0 else "serve"
            elapsed, got = (int(x) for x in reader.ask(f"{what} {value}"))
            if got != value:
                stale += 1
            times[what].append(elapsed)
    finally:
        reader.close()
    log(f"large_state: second process done ({stale} stale reads)")
    inst.shutdown()
    return {
        "create_ns": create_ns,
        "write": write,
        "update": upd,
        "update_n_after": after,
        "update_n_expected": expected,
        "xproc_first": first_ns,
        "xproc_read": times["read"],
        "xproc_serve": times["serve"],
        "xproc_stale": stale,
    }


def xproc_reader(spec: dict[str, Any]) -> None:
    """The second process: serve once on another instance (so that imports
    and connections are not timed), open the instance (no update task), serve
    once (loading big), then time read_state("n") or a serve with new props each
    time the driver says it committed a new value."""
    warm = Serve(instance_id="reader-warmup")  # imports and connections, outside the timing
    warm.run("get", props={"k": 0})
    warm.shutdown()
    inst = Big(instance_id="big-1", init_state_params={"mb": spec["mb"]}, disable_update_task=True)
    t0 = clock()
    n, _, _ = inst.run("get", props={"r": -1})
    first = clock() - t0
    print(f"ok {first} {n}", flush=True)
    for r, line in enumerate(sys.stdin, 1):
        cmd, _arg = line.split()
        if cmd == "quit":
            break
        t0 = clock()
        got = inst.read_state("n") if cmd == "read" else inst.run("get", props={"r": r})[0]
        elapsed = clock() - t0
        # A stale value is reported as is: the driver counts it.
        print(f"ok {elapsed} {got}", flush=True)
    inst.shutdown()


def lifecycle(spec: dict[str, Any]) -> dict[str, Any]:
    """Create an instance under a new id, one serve, shut it down."""
    rounds, n, warm = spec["rounds"], spec["instances"], spec["warm"]

    def one(i: int) -> None:
        inst = Session(instance_id=f"session-{i}")
        check(inst.run("get", props={"k": 1}) == 1, "serve returned a wrong result")
        inst.shutdown()

    samples: list[int] = []
    start = 0
    for r in range(rounds):
        samples += time_calls(one, n, start=start, warm=warm)
        start += n + warm
        log(f"lifecycle round {r}: mean {sum(samples[-n:]) / n / 1e6:.2f} ms")
    return {"samples": samples, "created": start}


def multiproc(spec: dict[str, Any]) -> dict[str, Any]:
    """``procs`` processes each open the same ``instances`` counters and run
    ``increments`` updates on each, then flush; the counters should end at
    procs x increments. Timed from the go signal to the last child's
    flush_update returning, and to the last child's exit."""
    procs, m, k = spec["procs"], spec["instances"], spec["increments"]
    ids = [f"mp-{j}" for j in range(m)]
    for i in ids:  # create them first: the race measured is on updates, not on creation
        Counter(instance_id=i, disable_update_task=True).shutdown()
    children = [child("mp-child", spec) for _ in range(procs)]
    try:
        for c in children:
            assert c.stdout is not None
            line = c.stdout.readline().strip()
            check(line == "ready", f"a child answered {line!r} instead of ready")
        t0 = time.perf_counter()
        go = time.time()
        for c in children:
            assert c.stdin is not None
            c.stdin.write(f"go {go}\n")
            c.stdin.flush()
        flushed = []
        for c in children:
            assert c.stdout is not None
            line = c.stdout.readline().split()
            check(len(line) == 2 and line[0] == "flushed", f"a child answered {line!r} instead of flushed")
            flushed.append(float(line[1]))
        codes = [c.wait(1800) for c in children]
        wall = time.perf_counter() - t0
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
    check(all(code == 0 for code in codes), f"children exited with {codes} (their stderr is above)")
    observed = {}
    for i in ids:
        inst = Counter(instance_id=i, disable_update_task=True)
        observed[i] = inst.read_state("n")
        inst.shutdown()
    return {
        "observed": observed,
        "expected_each": procs * k,
        "wall_s": wall,
        "flushed_s": max(flushed) - go,
        "updates": procs * m * k,
    }


def mp_child(spec: dict[str, Any]) -> None:
    insts = [Counter(instance_id=f"mp-{j}", update_task_type="thread") for j in range(spec["instances"])]
    print("ready", flush=True)
    sys.stdin.readline()  # "go <time>"
    pid = os.getpid()
    for k in range(spec["increments"]):
        for inst in insts:
            inst.run("inc", props={"pid": pid, "k": k})
    for inst in insts:
        inst.flush_update("inc")
    print(f"flushed {time.time()}", flush=True)
    for inst in insts:
        inst.shutdown()


def forked(spec: dict[str, Any]) -> dict[str, Any]:
    """A parent that has used the library (opened a counter, run an update
    on it and flushed, its update task left running) forks ``procs``
    children (multiprocessing, fork start method), as gunicorn or a
    multiprocessing pool do; each opens the same instance, runs ``updates``
    updates on it, flushes and shuts down. Timed from the first fork to the
    last child's exit, then the counter is read in the parent (it must be
    procs x updates + 1). Each trial uses a new instance and new children in
    the same parent; the first trial's time is reported on its own too.
    Times are in nanoseconds."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs, n = spec["procs"], spec["updates"]
    out: dict[str, list[int]] = {"wall": [], "final": []}
    for t in range(spec["trials"]):
        iid = f"fork-{t}"
        inst = Counter(instance_id=iid)  # the parent's use: its update task runs
        inst.run("inc", props={"i": -1})
        inst.flush_update("inc")
        t0 = clock()
        children = [ctx.Process(target=forked_child, args=(iid, n)) for _ in range(procs)]
        for c in children:
            c.start()
        for c in children:
            c.join(600)
        wall = clock() - t0
        codes = [c.exitcode for c in children]
        for c in children:
            if c.exitcode is None:
                c.kill()
                c.join()
        check(all(code == 0 for code in codes), f"children exited with {codes} (their stderr is above)")
        reader = Counter(instance_id=iid, disable_update_task=True)
        final = reader.read_state("n")
        reader.shutdown()
        inst.shutdown()
        out["wall"].append(wall)
        out["final"].append(final)
        log(f"forked trial {t}: {wall / 1e6:,.0f} ms, counter {final} of {procs * n + 1}")
    return {**out, "expected": procs * n + 1}


def forked_child(iid: str, n: int) -> None:
    inst = Counter(instance_id=iid)
    pid = os.getpid()
    for i in range(n):
        inst.run("inc", props={"pid": pid, "i": i})
    inst.flush_update("inc")
    inst.shutdown()


WORKLOADS = {
    "serve": serve,
    "update": update,
    "update_process": update,
    "large_state": large_state,
    "lifecycle": lifecycle,
    "multiproc": multiproc,
    "forked": forked,
}
CHILDREN = {"xproc-reader": xproc_reader, "mp-child": mp_child}


if __name__ == "__main__":
    name, spec_json = sys.argv[1], sys.argv[2]
    spec = json.loads(spec_json)
    if name in CHILDREN:
        CHILDREN[name](spec)
    else:
        try:
            result = WORKLOADS[name](spec)
        except WrongResult as exc:
            print("RESULT " + json.dumps({"wrong": str(exc)}), flush=True)
            sys.exit(3)
        print("RESULT " + json.dumps(result), flush=True)
