"""What the runs log costs: the serve path and update throughput with
``tidal.App(..., runs_log=True)`` (the default) against ``runs_log=False``,
in the same run.

* serve: the ``serve`` workload's loops (cache miss: new props every call;
  cache hit: the same props) on two apps side by side, one with the runs log
  and one without, in alternating order round by round. Every call buffers a
  run; the writer thread wakes every 2,000 runs (or 0.2 s) and writes them,
  so a timed loop of 20,000 calls includes about ten of its writes. Between
  loops the buffer is flushed outside the clock, so that one loop's rows are
  not written during the next.
* update: the ``update`` workload's end to end trial (``N`` runs of an
  update-only flow, then ``flush_update``) with the runs log on and off,
  alternating. Each update writes two rows: the run (kind ``serve``, the flow
  has no serve op) and the applied update (kind ``update``). Also reported
  with the clock stopped only after ``app.runlog.flush()`` has written every
  row.

Checks: the serve results, the cache hits and misses (as in ``serve``), the
counter and version (as in ``update``), and, after ``app.runlog.flush()``,
``SELECT count(*) FROM runs`` (and per kind) holding exactly one row per
serve call and two per update; the app without the runs log has none.

Floors: the serve function called on a plain dict, and the update function
merged into a dict in a loop (those of ``serve`` and ``update``). The
on / off rows are ratios of the two measured values (> 1: the runs log costs
that much).
"""

from __future__ import annotations

import time
from typing import Any

import tidal

from . import serve as serve_workload
from . import update as update_workload
from .common import Config, Metric, bench_app, check, median, percentile, time_calls, us

NAME = "runs_log"
TITLE = "runs log: serve latency and update throughput, runs_log on vs off"

METRICS: list[Metric] = []
for _key, _what in (("miss", "cache miss"), ("hit", "cache hit")):
    for _q in ("p50", "p99", "mean"):
        METRICS += [
            Metric(f"{_key}_{_q}_off", f"serve {_what} {_q}, runs log off", "us"),
            Metric(f"{_key}_{_q}_on", f"serve {_what} {_q}, runs log on", "us"),
        ]
    METRICS += [
        Metric(f"{_key}_cost", f"serve {_what} p50: on / off", "x", note="> 1: the runs log's cost"),
        Metric(
            f"{_key}_mean_cost",
            f"serve {_what} mean: on / off",
            "x",
            note="the mean is the loop's time per call (1 / calls per second), GIL waits included",
        ),
    ]
METRICS += [
    Metric("e2e_off", "update end to end, runs log off", "updates/s", higher_is_better=True),
    Metric("e2e_on", "update end to end, runs log on (2 rows/update)", "updates/s", higher_is_better=True),
    Metric(
        "e2e_on_written",
        "same, clock stops after runlog.flush()",
        "updates/s",
        higher_is_better=True,
        note="every run row written too",
    ),
    Metric("e2e_cost", "update throughput: off / on", "x", note="> 1: the runs log's cost"),
]


def _latency(pattern: str, samples: list[int]) -> dict[str, float]:
    """p50, p99 and mean of ``samples`` (ns) in us, keyed ``pattern % stat``."""
    return {
        pattern % "p50": us(median(samples)),
        pattern % "p99": us(percentile(samples, 99)),
        pattern % "mean": us(sum(samples) / len(samples)),
    }


def _serve_sizes(cfg: Config) -> tuple[int, int, int]:
    """(rounds, calls per loop, warmup calls)."""
    return cfg.pick(5, 1), cfg.pick(20_000, 1_000), cfg.pick(2_000, 200)


def _update_sizes(cfg: Config) -> tuple[int, int]:
    """(trials per setting, updates per trial)."""
    return cfg.pick(3, 1), cfg.pick(20_000, 2_000)


def baseline(cfg: Config) -> dict[str, float]:
    rounds, n, warm = _serve_sizes(cfg)
    state = {"n": 1}
    miss: list[int] = []
    hit: list[int] = []
    for _ in range(rounds):
        miss += time_calls(lambda i: serve_workload._work(state, {"k": i}), n, warm=warm)
        hit += time_calls(lambda i: serve_workload._work(state, {"k": 1}), n, warm=warm)
    out: dict[str, float] = {}
    for setting in ("off", "on"):
        out.update(_latency(f"miss_%s_{setting}", miss))
        out.update(_latency(f"hit_%s_{setting}", hit))
    rate = update_workload.baseline(cfg)["e2e"]
    out.update(e2e_off=rate, e2e_on=rate, e2e_on_written=rate)
    return out


def _runs(app: tidal.App) -> dict[str, int]:
    """Rows of the runs relation per kind, after writing what is buffered."""
    runlog = app.runlog
    check(runlog is not None, "the app has no runs log")
    assert runlog is not None
    runlog.flush()
    total = app.sql("SELECT count(*) FROM runs").scalar()
    per_kind = {row["kind"]: row["n"] for row in app.sql("SELECT kind, count(*) AS n FROM runs GROUP BY kind")}
    check(sum(per_kind.values()) == total, f"runs per kind {per_kind} do not add up to {total}")
    return per_kind


class _Server:
    """One app with the serve workload's component, counting its calls."""

    def __init__(self, app: tidal.App) -> None:
        self.app = app
        C = app.component("Serve")

        @C.init_state
        def setup() -> dict[str, int]:
            return {"n": 1}

        @C.serve("get")
        def get(state: Any, props: Any) -> int:
            return serve_workload._work(state, props)

        self.inst = C("serve-1")
        self.calls = 0
        self.miss: list[int] = []
        self.hit: list[int] = []
        self.next_k = 10  # every miss call gets props no call has used before

    def loops(self, n: int, warm: int) -> None:
        inst, cache = self.inst, self.app.cache
        before = cache.misses
        self.miss += time_calls(lambda i: inst.run("get", props={"k": i}), n, start=self.next_k, warm=warm)
        self.next_k += n + warm
        missed = cache.misses - before
        check(missed == n + warm, f"{missed} of {n + warm} calls with new props missed the cache")
        self._flush()
        before = cache.hits
        self.hit += time_calls(lambda i: inst.run("get", props={"k": 1}), n, warm=warm)
        hits = cache.hits - before
        check(hits >= n + warm - 1, f"only {hits} of {n + warm} calls with the same props hit the cache")
        self._flush()
        self.calls += 2 * (n + warm)

    def _flush(self) -> None:
        if self.app.runlog is not None:
            self.app.runlog.flush()

    def finish(self) -> None:
        check(self.inst.run("get", props={"k": self.next_k}) == self.next_k + 1, "serve returned a wrong result")
        check(self.inst.run("get", props={"k": 1}) == 2, "cached serve returned a wrong result")
        self.calls += 2
        self.inst.close()


def _serve(store: str, cfg: Config) -> dict[str, float]:
    rounds, n, warm = _serve_sizes(cfg)
    with bench_app(store, "off", runs_log=False) as app_off, bench_app(store, "on", runs_log=True) as app_on:
        off, on = _Server(app_off), _Server(app_on)
        for r in range(rounds):
            for server in (off, on) if r % 2 == 0 else (on, off):
                server.loops(n, warm)
        off.finish()
        on.finish()
        check(app_off.runlog is None, "runs_log=False, yet the app has a runs log")
        runs = _runs(app_on)
        check(runs == {"serve": on.calls}, f"runs log holds {runs} after {on.calls} serve calls")
    out: dict[str, float] = {}
    for setting, server in (("off", off), ("on", on)):
        out.update(_latency(f"miss_%s_{setting}", server.miss))
        out.update(_latency(f"hit_%s_{setting}", server.hit))
    for key in ("miss", "hit"):
        out[f"{key}_cost"] = out[f"{key}_p50_on"] / out[f"{key}_p50_off"]
        out[f"{key}_mean_cost"] = out[f"{key}_mean_on"] / out[f"{key}_mean_off"]
    return out


def _update(store: str, n: int, runs_log: bool) -> tuple[float, float]:
    """(updates/s until flush_update returns, until the runs are written too)."""
    with bench_app(store, runs_log=runs_log) as app:
        inst = update_workload._define(app)("counter-e2e")
        check(app.executor_running, "no executor started")
        t0 = time.perf_counter()
        for i in range(n):
            inst.run("inc", props={"i": i})
        inst.flush_update("inc")
        t1 = time.perf_counter()
        if runs_log:
            runlog = app.runlog
            assert runlog is not None
            runlog.flush()
        t2 = time.perf_counter()
        update_workload._check_counter(inst, n, f"update trial on {store}, runs_log={runs_log}")
        if runs_log:
            runs = _runs(app)
            check(runs == {"serve": n, "update": n}, f"runs log holds {runs} after {n} updates, expected {n} of each")
        else:
            check(app.runlog is None, "runs_log=False, yet the app has a runs log")
        inst.close()
    return n / (t1 - t0), n / (t2 - t0)


def run(store: str, cfg: Config) -> dict[str, float]:
    out = _serve(store, cfg)
    trials, n = _update_sizes(cfg)
    off, on, written = [], [], []
    for t in range(trials):
        for runs_log in (False, True) if t % 2 == 0 else (True, False):
            rate, rate_written = _update(store, n, runs_log)
            if runs_log:
                on.append(rate)
                written.append(rate_written)
            else:
                off.append(rate)
    out["e2e_off"] = median(off)
    out["e2e_on"] = median(on)
    out["e2e_on_written"] = median(written)
    out["e2e_cost"] = out["e2e_off"] / out["e2e_on"]
    return out


if __name__ == "__main__":
    from .run_all import main

    main(["--only", NAME])
