"""Update throughput on one instance.

* end to end: ``N`` calls ``inst.run("inc", props={"i": i})`` of an update-only
  flow whose update op increments a counter, then ``flush_update``; the clock
  stops when every update is committed. The app's executor (default threads)
  applies updates while the calls are still being made, so the run-call rate
  in this trial is also reported ("while applying"). On SQLite the same
  trial also runs with ``update_task_type="process"`` (a forked child applies
  the updates, so the two sides do not share a GIL).
* enqueue: the same ``N`` calls on an instance made with
  ``disable_update_task=True``, so nothing competes with them.
* apply: that backlog drained by ``tidal.engine.executor.Executor(app, threads=1).drain()``
  in the calling thread.

Every trial checks that the counter ends at exactly ``N`` and the version at
``N + 1``: a run that loses or repeats an update fails.

The floor is the update function called directly in a loop on a plain dict,
merging its result back into the state.
"""

from __future__ import annotations

import time
from typing import Any

import tidal
from tidal.engine.executor import Executor

from .common import Config, Metric, bench_app, check, median, raw_sqlite, sqlite_path

NAME = "update"
TITLE = "update throughput (one instance, counter increments)"

METRICS = [
    Metric("e2e", "end to end, N runs + flush", "updates/s", higher_is_better=True, target=15_000, motion=1_500),
    Metric("run_concurrent", "run calls/s while applying", "calls/s", higher_is_better=True),
    Metric(
        "e2e_process",
        "end to end, update_task_type='process'",
        "updates/s",
        higher_is_better=True,
        note="updates applied by a forked child process; needs a shared store, so SQLite only",
    ),
    Metric("enqueue", "enqueue: run calls/s, no executor", "calls/s", higher_is_better=True),
    Metric("apply", "apply: Executor(threads=1).drain()", "updates/s", higher_is_better=True),
    Metric(
        "raw_insert",
        "ref: raw sqlite3 INSERT into tidal_ops, 1 txn each",
        "calls/s",
        higher_is_better=True,
        note="the SQLite floor of one enqueue per run call; not measured on memory://",
    ),
]


def _inc(state: Any, props: Any) -> dict[str, int]:
    return {"n": state["n"] + 1}


def _sizes(cfg: Config) -> tuple[int, int]:
    """(trials, updates per trial)."""
    return cfg.pick(5, 1), cfg.pick(20_000, 2_000)


def baseline(cfg: Config) -> dict[str, float]:
    trials, n = _sizes(cfg)
    rates = []
    for _ in range(trials):
        state: dict[str, Any] = {"n": 0}
        t0 = time.perf_counter()
        for i in range(n):
            state = {**state, **_inc(state, {"i": i})}
        rates.append(n / (time.perf_counter() - t0))
        check(state["n"] == n, "floor lost updates")
    rate = median(rates)
    return {"e2e": rate, "run_concurrent": rate, "e2e_process": rate, "enqueue": rate, "apply": rate}


def _define(app: tidal.App) -> tidal.Component:
    C = app.component("Counter")

    @C.init_state
    def setup() -> dict[str, int]:
        return {"n": 0}

    C.update("inc")(_inc)
    return C


def _check_counter(inst: tidal.Instance, n: int, what: str) -> None:
    got = inst.read_state("n")
    check(got == n, f"{what}: counter is {got} after {n} updates (lost or repeated updates)")
    version = inst.get_version()
    check(version == n + 1, f"{what}: version is {version} after {n} updates, expected {n + 1}")


def _end_to_end(store: str, n: int, task_type: str = "thread") -> tuple[float, float]:
    with bench_app(store) as app:
        inst = _define(app)("counter-e2e", update_task_type=task_type)  # type: ignore[arg-type]
        check(app.executor_running, "no executor started")
        t0 = time.perf_counter()
        for i in range(n):
            inst.run("inc", props={"i": i})
        t1 = time.perf_counter()
        inst.flush_update("inc")
        t2 = time.perf_counter()
        _check_counter(inst, n, f"end-to-end trial on {store} ({task_type})")
        inst.close()
    return n / (t2 - t0), n / (t1 - t0)


def _enqueue_then_apply(store: str, n: int) -> tuple[float, float]:
    with bench_app(store) as app:
        inst = _define(app)("counter-backlog", disable_update_task=True)
        check(not app.executor_running, "executor started although updates are disabled")
        t0 = time.perf_counter()
        for i in range(n):
            inst.run("inc", props={"i": i})
        t1 = time.perf_counter()
        queued = app.store.pending("Counter", "counter-backlog")
        check(queued == n, f"{queued} ops queued after {n} runs")
        executor = Executor(app, threads=1)
        t2 = time.perf_counter()
        executor.drain()
        t3 = time.perf_counter()
        check(executor.failed_ops == 0, f"{executor.failed_ops} updates failed")
        check(executor.committed_ops == n, f"executor committed {executor.committed_ops} of {n} ops")
        _check_counter(inst, n, f"backlog trial on {store}")
        inst.close()
    return n / (t1 - t0), n / (t3 - t2)


def _raw_insert(n: int) -> float:
    """INSERTs per second of op rows like the ones ``run`` enqueues, each in
    its own transaction, into a Tidal SQLite file through plain sqlite3."""
    with bench_app("sqlite") as app:
        inst = _define(app)("counter-raw", disable_update_task=True)
        inst.run("inc", props={"i": 0})
        conn = raw_sqlite(sqlite_path(app))
        (payload,) = conn.execute("SELECT payload FROM tidal_ops LIMIT 1").fetchone()
        sql = "INSERT INTO tidal_ops (component, instance, flow, enqueued_at, payload) VALUES (?, ?, ?, ?, ?)"
        t0 = time.perf_counter()
        for _ in range(n):
            conn.execute(sql, ("Counter", "counter-raw", "inc", time.time(), payload))
        rate = n / (time.perf_counter() - t0)
        conn.close()
        inst.close()
    return rate


def run(store: str, cfg: Config) -> dict[str, float]:
    trials, n = _sizes(cfg)
    e2e, concurrent, enqueue, apply, raw, process = [], [], [], [], [], []
    for _ in range(trials):
        a, b = _end_to_end(store, n)
        e2e.append(a)
        concurrent.append(b)
        c, d = _enqueue_then_apply(store, n)
        enqueue.append(c)
        apply.append(d)
        if store == "sqlite":
            process.append(_end_to_end(store, n, "process")[0])
            raw.append(_raw_insert(n))
    out = {
        "e2e": median(e2e),
        "run_concurrent": median(concurrent),
        "enqueue": median(enqueue),
        "apply": median(apply),
    }
    if raw:
        out["e2e_process"] = median(process)
        out["raw_insert"] = median(raw)
    return out


if __name__ == "__main__":
    from .run_all import main

    main(["--only", NAME])
