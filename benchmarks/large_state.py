"""Large state: a 64 MB numpy array ("big") next to a small counter ("n").

What a commit that changes only the counter costs, measured from outside
(claim-to-commit time is internal to the executor):

* ``write_state({"n": i})``: one direct commit of the small key;
* ``run`` + ``flush_update`` of a flow whose update op returns only ``{"n": ...}``:
  enqueue, claim, apply, commit and the wake-up of the flushing caller;
* in a second process (SQLite only; ``memory://`` is per process) that has
  opened the same instance and decoded "big" once: after this process
  commits a small change, the time of that process's next ``read_state("n")``
  and of its next serve (which reads "n" and "big") seeing the new version.
  Only the changed key should be read and decoded again.

For contrast: ``pickle.dumps`` of the 64 MB array once (what re-pickling the
whole state costs, which Motion does on every commit), and a commit that does
rewrite "big".

Floors: the same operation on a plain dict (assign the key, call the update
function, read the key, call the serve function), and ``pickle.loads`` of the
array for the second process's first read.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

import tidal

from .common import (
    BenchmarkFailure,
    Config,
    Metric,
    bench_app,
    check,
    median,
    ms,
    percentile,
    raw_sqlite,
    sqlite_path,
    time_calls,
)

FULL_MB = 64
QUICK_MB = 4

NAME = "large_state"
TITLE = f"large state ({FULL_MB} MB array + small counter; {QUICK_MB} MB with --quick)"

METRICS = [
    Metric("write_p50", "write_state({'n'}) p50", "ms", target=1.5, motion=150),
    Metric("write_p99", "write_state({'n'}) p99", "ms"),
    Metric("update_p50", "run + flush_update, update sets n, p50", "ms", target=1.5, motion=150),
    Metric("update_p99", "run + flush_update, update sets n, p99", "ms"),
    Metric(
        "raw_commit_p50",
        "ref: raw sqlite3 txn updating n and the version, p50",
        "ms",
        note="the SQLite floor of a small-key commit; not measured on memory://",
    ),
    Metric("xproc_first", "2nd process: first serve (decodes big)", "ms"),
    Metric("xproc_read_p50", "2nd process: read_state('n') after commit, p50", "ms"),
    Metric("xproc_read_p99", "2nd process: read_state('n') after commit, p99", "ms"),
    Metric("xproc_serve_p50", "2nd process: serve after commit, p50", "ms"),
    Metric("xproc_serve_p99", "2nd process: serve after commit, p99", "ms"),
    Metric("pickle_big", "contrast: pickle.dumps(big) once", "ms"),
    Metric("commit_big", "contrast: write_state({'big'}) p50", "ms"),
]

COMPONENT = "Big"
INSTANCE = "big-1"


def _sizes(cfg: Config) -> dict[str, int]:
    return {
        "mb": cfg.pick(FULL_MB, QUICK_MB),
        "writes": cfg.pick(500, 50),
        "updates": cfg.pick(300, 30),
        "xproc_rounds": cfg.pick(60, 5),
        "pickles": cfg.pick(5, 2),
        "big_commits": cfg.pick(3, 1),
    }


def _array(mb: int) -> np.ndarray:
    return np.arange(mb * 1024 * 1024 // 8, dtype=np.float64)


def _bump(state: Any, props: Any) -> dict[str, int]:
    return {"n": state["n"] + 1}


def _get(state: Any, props: Any) -> tuple[int, float]:
    return state["n"], float(state["big"][-1])


def _define(app: tidal.App, mb: int) -> tidal.Component:
    C = app.component(COMPONENT)

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0, "big": _array(mb)}

    C.serve("get")(_get)
    C.update("bump")(_bump)
    return C


def baseline(cfg: Config) -> dict[str, float]:
    sz = _sizes(cfg)
    big = _array(sz["mb"])
    state: dict[str, Any] = {"n": 0, "big": big}

    def assign(i: int) -> None:
        state.update({"n": i})

    def update(i: int) -> None:
        state.update(_bump(state, {"i": i}))

    def read(i: int) -> int:
        return int(state["n"])

    write = time_calls(assign, sz["writes"], warm=20)
    upd = time_calls(update, sz["updates"], warm=20)
    rd = time_calls(read, sz["xproc_rounds"], warm=20)
    srv = time_calls(lambda i: _get(state, {}), sz["xproc_rounds"], warm=20)
    blob = pickle.dumps(big, protocol=5)
    loads = time_calls(lambda i: pickle.loads(blob), sz["pickles"])
    return {
        "write_p50": ms(median(write)),
        "write_p99": ms(percentile(write, 99)),
        "update_p50": ms(median(upd)),
        "update_p99": ms(percentile(upd, 99)),
        "xproc_first": ms(median(loads)),
        "xproc_read_p50": ms(median(rd)),
        "xproc_read_p99": ms(percentile(rd, 99)),
        "xproc_serve_p50": ms(median(srv)),
        "xproc_serve_p99": ms(percentile(srv, 99)),
    }


class _Reader:
    """The second process, driven line by line over its stdin/stdout."""

    def __init__(self, db: Path, home: Path, mb: int) -> None:
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        root = Path(__file__).resolve().parent.parent
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.large_state", "--reader", str(db), str(home), str(mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            cwd=root,
            env=env,
        )

    def ask(self, line: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        reply = self.proc.stdout.readline().split()
        if not reply or reply[0] != "ok":
            self._err.seek(0)
            raise BenchmarkFailure(f"second process answered {reply!r} to {line!r}; its stderr:\n{self._err.read()}")
        return reply[1:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit 0\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def _cross_process(inst: tidal.Instance, db: Path, home: Path, sz: dict[str, int]) -> dict[str, float]:
    reader = _Reader(db, home, sz["mb"])
    try:
        first_ns, n_seen = (int(x) for x in reader.ask(""))
        check(n_seen == inst.read_state("n"), f"second process saw n={n_seen} at start")
        times: dict[str, list[int]] = {"read": [], "serve": []}
        value = 1_000_000
        for r in range(2 * sz["xproc_rounds"]):
            value += 1
            inst.write_state({"n": value})
            what = "read" if r % 2 == 0 else "serve"
            elapsed, got = (int(x) for x in reader.ask(f"{what} {value}"))
            check(got == value, f"second process {what} saw n={got} after n={value} was committed")
            times[what].append(elapsed)
    finally:
        reader.close()
    return {
        "xproc_first": ms(first_ns),
        "xproc_read_p50": ms(median(times["read"])),
        "xproc_read_p99": ms(percentile(times["read"], 99)),
        "xproc_serve_p50": ms(median(times["serve"])),
        "xproc_serve_p99": ms(percentile(times["serve"], 99)),
    }


def _raw_commit(db: Path, inst: tidal.Instance, n: int) -> float:
    """p50 ms of a plain sqlite3 transaction doing the least a small-key
    commit must: bump the instance's version and rewrite the key's row."""
    conn = raw_sqlite(db)
    (value,) = conn.execute(
        "SELECT value FROM tidal_state WHERE component=? AND instance=? AND key='n'", (COMPONENT, INSTANCE)
    ).fetchone()

    def commit(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE tidal_instances SET version=version+1, updated_at=? WHERE component=? AND instance=?",
            (time.time(), COMPONENT, INSTANCE),
        )
        conn.execute(
            "UPDATE tidal_state SET version=(SELECT version FROM tidal_instances "
            "WHERE component=?1 AND instance=?2), value=?3 WHERE component=?1 AND instance=?2 AND key='n'",
            (COMPONENT, INSTANCE, value),
        )
        conn.execute("COMMIT")

    samples = time_calls(commit, n, warm=20)
    conn.close()
    check(inst.read_state("n") is not None, "state unreadable after raw commits")
    return ms(median(samples))


def run(store: str, cfg: Config) -> dict[str, float]:
    sz = _sizes(cfg)
    out: dict[str, float] = {}
    with bench_app(store) as app:
        C = _define(app, sz["mb"])
        inst = C(INSTANCE)
        big = inst.read_state("big")
        check(big.nbytes == sz["mb"] * 1024 * 1024, f"big holds {big.nbytes} bytes")

        pickles = [time_calls(lambda i: pickle.dumps(big, protocol=5), 1)[0] for _ in range(sz["pickles"])]
        out["pickle_big"] = ms(median(pickles))

        write = time_calls(lambda i: inst.write_state({"n": i}), sz["writes"], warm=20)
        last = 20 + sz["writes"] - 1
        check(inst.read_state("n") == last, f"n is {inst.read_state('n')} after writing {last}")
        out["write_p50"] = ms(median(write))
        out["write_p99"] = ms(percentile(write, 99))

        def update(i: int) -> None:
            inst.run("bump", props={"i": i})
            inst.flush_update("bump")

        before = inst.read_state("n")
        upd = time_calls(update, sz["updates"], warm=10)
        after = inst.read_state("n")
        check(after == before + sz["updates"] + 10, f"n went from {before} to {after} in {sz['updates']} + 10")
        out["update_p50"] = ms(median(upd))
        out["update_p99"] = ms(percentile(upd, 99))

        if store == "sqlite":
            db = sqlite_path(app)
            out["raw_commit_p50"] = _raw_commit(db, inst, sz["writes"])
            out.update(_cross_process(inst, db, app.home, sz))

        commits = []
        for k in range(sz["big_commits"]):
            other = _array(sz["mb"]) + k + 1
            commits.append(time_calls(lambda i, a=other: inst.write_state({"big": a}), 1)[0])
        check(float(inst.read_state("big")[0]) == sz["big_commits"], "big was not rewritten")
        out["commit_big"] = ms(median(commits))
        inst.close()
    return out


def _reader_main(db: str, home: str, mb: int, stdin: TextIO, stdout: TextIO) -> None:
    """The second process: open the instance, serve once (decoding big), then
    time ``read_state("n")`` or a serve each time it is told a new value was
    committed."""
    app = tidal.App("bench", store=f"sqlite:///{db}", home=home)
    inst = _define(app, mb)(INSTANCE, disable_update_task=True)
    clock = time.perf_counter_ns
    t0 = clock()
    n, _ = inst.run("get")
    first = clock() - t0
    stdout.write(f"ok {first} {n}\n")
    stdout.flush()
    for line in stdin:
        cmd, _arg = line.split()
        if cmd == "quit":
            break
        t0 = clock()
        got = inst.read_state("n") if cmd == "read" else inst.run("get")[0]
        elapsed = clock() - t0
        # A stale value is reported as is: the driver checks it and fails the run.
        stdout.write(f"ok {elapsed} {got}\n")
        stdout.flush()
    inst.close()
    app.close()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--reader":
        _reader_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.stdin, sys.stdout)
    else:
        from .run_all import main

        main(["--only", NAME])
