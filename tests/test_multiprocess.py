"""Several real processes on one SQLite file: crashes, fencing, fresh reads,
concurrent counters and the cost of idling.

Every child runs ``proc.py`` (written below into the test's folder) with the
same component code, the same store file and the same TIDAL_SECRET_KEY."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app

import tidal
from tidal.codec import Codec, key_context, state_context
from tidal.engine.executor import Executor
from tidal.stores.sqlite import SQLiteStore

SECRET = "multiprocess-test-secret-key-0123456789"

PROC = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    import numpy as np

    import tidal

    mode, db, args = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    app = tidal.App(
        "mp",
        store=f"sqlite:///{db}",
        home=db.parent / "home",
        settings=tidal.Settings(
            lease_seconds=args.get("lease", 1.0),
            sweep_seconds=0.1,
            max_batch=args.get("max_batch", 256),
        ),
    )

    Log = app.component("Log")

    @Log.init_state
    def log_setup():
        return {"items": [], "other": "untouched"}

    @Log.serve("append")
    def log_items(state, props):
        return list(state["items"])

    @Log.update("append")
    def log_append(state, props):
        if props.get("block") and mode == "crash":
            # Mid-op: tell the test we are here, then hang until killed.
            Path(props["marker"]).write_text(str(os.getpid()))
            time.sleep(3600)
        return {"items": state["items"] + [props["i"]]}

    Counter = app.component("Counter")

    @Counter.init_state
    def counter_setup():
        return {"n": 0, "tags": []}

    @Counter.update("inc")
    def counter_inc(state, props):
        if mode == "loop":
            time.sleep(0.002)  # slow enough to be killed mid-way
        tags = state["tags"] + [props["tag"]] if "tag" in props else state["tags"]
        return {"n": state["n"] + 1, "tags": tags}

    Big = app.component("Big")

    @Big.init_state
    def big_setup():
        return {"big": np.zeros(1 << 20), "n": 0}

    @Big.update("bump")
    def big_bump(state, props):
        return {"n": state["n"] + 1}

    def report(**values):
        print(json.dumps(values), flush=True)

    if mode == "crash":
        log = Log("log")
        for i in range(5):
            log.run("append", props={"i": i}, flush_update=True)
        log.run("append", props={"i": 5, "block": True, "marker": args["marker"]})
        log.run("append", props={"i": 6})
        log.run("append", props={"i": 7})
        time.sleep(3600)

    elif mode == "recover":
        log = Log("log")
        start = time.monotonic()
        log.flush_update(timeout=30)
        report(items=log.read_state("items"), other=log.read_state("other"),
               elapsed=time.monotonic() - start)

    elif mode == "loop":
        c = Counter("ctr")
        for _ in range(args["n"]):
            c.run("inc")
        Path(args["marker"]).write_text("enqueued")
        time.sleep(3600)

    elif mode == "recover-counter":
        c = Counter("ctr")
        start = time.monotonic()
        c.flush_update(timeout=30)
        report(n=c.read_state("n"), elapsed=time.monotonic() - start)

    elif mode == "bump":
        big = Big("b1")
        for _ in range(args["times"]):
            big.run("bump", flush_update=True)

    elif mode == "count":
        counters = [Counter(name) for name in args["instances"]]
        Path(args["go"] + "." + args["who"]).write_text("ready")
        go = Path(args["go"])
        while not go.exists():
            time.sleep(0.01)
        for i in range(args["n"]):
            for c in counters:
                c.run("inc", props={"tag": f"{args['who']}:{c.instance_id}:{i}"})
        for c in counters:
            c.flush_update(timeout=60)
        executor = app._executor
        app.close()
        report(
            committed=executor.committed_ops if executor else 0,
            lost=executor.lost_leases if executor else 0,
        )
    """
)


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``proc.py`` in a given mode; every child is killed at the end."""
    script = tmp_path / "proc.py"
    script.write_text(PROC)
    db = tmp_path / "mp.db"
    env = {**os.environ, "TIDAL_SECRET_KEY": SECRET, "TIDAL_HOME": str(tmp_path / "home")}
    children: list[subprocess.Popen[str]] = []

    def start(mode: str, **args: Any) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, str(script), mode, str(db), json.dumps(args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate()


def finish(child: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
    """Wait for a child and return what it reported (its last stdout line)."""
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, f"child failed ({child.returncode}):\n{err}"
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def kill9(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    assert child.returncode == -signal.SIGKILL


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """The test's own view of the children's store file."""
    s = SQLiteStore(tmp_path / "mp.db")
    yield s
    s.close()


def decode(raw: bytes, component: str, instance: str, key: str) -> Any:
    return Codec(SECRET.encode()).loads(raw, context=key_context(state_context(component, instance), key))


def state_of(store: SQLiteStore, component: str, instance: str) -> dict[str, Any]:
    read = store.read_state(component, instance)
    assert read is not None, f"{component}/{instance} does not exist"
    return {k: decode(v, component, instance, k) for k, v in read.changed.items()}


def lease_of(store: SQLiteStore, component: str, instance: str) -> float | None:
    """When the lease on an instance expires (None: no lease row)."""
    row = (
        store.db.conn()
        .execute("SELECT expires_at FROM tidal_leases WHERE component=? AND instance=?", (component, instance))
        .fetchone()
    )
    return None if row is None else float(row[0])


# -- a. a worker killed mid-op ------------------------------------------------------


@pytest.mark.slow
def test_an_op_in_flight_when_its_worker_is_killed_is_applied_exactly_once(
    proc: Callable[..., subprocess.Popen[str]], store: SQLiteStore, tmp_path: Path
) -> None:
    marker = tmp_path / "in-op"
    crashing = proc("crash", marker=str(marker))
    wait_for(marker.exists, 20, "the op to start")

    # The op hangs mid-way, holding its lease (renewed by the heartbeat):
    # ops 0-4 are committed, 5 (running), 6 and 7 are queued.
    assert state_of(store, "Log", "log")["items"] == [0, 1, 2, 3, 4]
    # The child queues 6 and 7 while 5 runs: they may be a moment behind the marker.
    wait_for(lambda: store.pending("Log", "log") == 3, 10, "ops 6 and 7 to be queued")
    expires = lease_of(store, "Log", "log")
    assert expires is not None and expires > time.time()
    assert store.claim(["Log"], "test", 1.0, 10) is None  # nobody else may take it

    kill9(crashing)
    assert lease_of(store, "Log", "log") is not None  # left behind, to expire
    assert store.pending("Log", "log") == 3  # nothing of the killed op was committed
    assert state_of(store, "Log", "log")["items"] == [0, 1, 2, 3, 4]

    started = time.monotonic()
    result = finish(proc("recover"))
    assert time.monotonic() - started < 15
    assert result["elapsed"] < 10  # the lease (1 s) expired and nothing stayed locked
    assert result["items"] == [0, 1, 2, 3, 4, 5, 6, 7]  # each op once, in order
    assert result["other"] == "untouched"
    assert store.pending("Log", "log") == 0
    assert store.failures("Log", "log") == []
    assert lease_of(store, "Log", "log") is None


@pytest.mark.slow
def test_a_worker_killed_in_a_busy_loop_loses_and_doubles_nothing(
    proc: Callable[..., subprocess.Popen[str]], store: SQLiteStore, tmp_path: Path
) -> None:
    total = 2000
    marker = tmp_path / "enqueued"
    looping = proc("loop", n=total, marker=str(marker), max_batch=50)
    wait_for(marker.exists, 20, "the ops to be enqueued")

    def counter() -> int:
        return int(state_of(store, "Counter", "ctr")["n"])

    # Let full batches commit, then kill the worker a little into the next one.
    start = counter()
    wait_for(lambda: counter() >= start + 50, 20, "a full batch to commit")
    seen = counter()
    wait_for(lambda: counter() > seen, 20, "the next commit")
    time.sleep(0.03)
    kill9(looping)
    # Its lease row is still there: it died holding a batch (a commit deletes it).
    assert lease_of(store, "Counter", "ctr") is not None, "the worker must die mid-batch"

    at_kill = counter()
    assert 0 < at_kill < total - 50, "the worker must die with ops left to do"
    # The ops of the batch in flight were not lost with their worker.
    assert store.pending("Counter", "ctr") == total - at_kill

    result = finish(proc("recover-counter"))
    assert result["n"] == total
    assert result["elapsed"] < 10
    assert store.pending("Counter", "ctr") == 0
    assert state_of(store, "Counter", "ctr")["n"] == total


# -- b. fencing -----------------------------------------------------------------


def test_a_worker_whose_lease_expired_cannot_commit(app: tidal.App) -> None:
    Log = app.component("Log")

    @Log.init_state
    def setup() -> dict[str, Any]:
        return {"items": []}

    @Log.update("append")
    def append(state, props):  # type: ignore[no-untyped-def]
        return {"items": [*state["items"], props["i"]]}

    log = Log("log", disable_update_task=True)  # no update threads: the test is the worker
    log.run("append", props={"i": 1})
    store = app.store
    slow = store.claim(["Log"], "slow", 0.2, 10)
    assert slow is not None
    time.sleep(0.3)
    fast = store.claim(["Log"], "fast", 30, 10)
    assert fast is not None and fast.op_ids == slow.op_ids
    assert fast.ops[0].attempts == 2

    worker = Executor(app)  # not started: process() runs in this thread
    worker.process(slow)  # runs the op, then finds its lease gone
    assert worker.lost_leases == 1 and worker.committed_ops == 0
    assert log.read_state("items") == []
    assert log.get_version() == 1
    assert store.pending("Log", "log") == 1

    with pytest.raises(tidal.LeaseLostError):
        store.commit("Log", "log", {"items": b"garbage"}, claim=slow, done=slow.op_ids)

    worker.process(fast)
    assert worker.committed_ops == 1
    assert log.read_state("items") == [1]  # applied once in total
    assert log.get_version() == 2
    assert store.pending("Log", "log") == 0


# -- c. fresh reads across processes ----------------------------------------------


@pytest.mark.slow
def test_a_reader_re_reads_only_the_keys_another_process_changed(
    proc: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    import numpy as np

    app = tidal.App("mp", store=f"sqlite:///{tmp_path / 'mp.db'}", home=tmp_path / "home", secret_key=SECRET)
    try:
        Big = app.component("Big")

        @Big.init_state
        def setup() -> dict[str, Any]:
            return {"big": np.arange(1 << 20, dtype=np.float64), "n": 0}  # 8 MB

        @Big.serve("get")
        def get(state, props):  # type: ignore[no-untyped-def]
            return state["n"], float(state["big"][-1])

        decoded: Counter[str] = Counter()
        real_decoder = app.decoder

        def counting_decoder(component: str, instance: str) -> Any:
            real_decode = real_decoder(component, instance)

            def counting_decode(raw: bytes, key: str) -> Any:
                decoded[key] += 1
                return real_decode(raw, key)

            return counting_decode

        app.decoder = counting_decoder  # type: ignore[method-assign]
        reads: list[tuple[int, dict[str, int]]] = []
        real_read = app.store.read_state

        def recording_read(component: str, instance: str, since: int = 0) -> Any:
            read = real_read(component, instance, since)
            if read is not None:
                reads.append((since, {k: len(v) for k, v in read.changed.items()}))
            return read

        app.store.read_state = recording_read  # type: ignore[method-assign]

        big = Big("b1", disable_update_task=True)  # process B runs the updates
        assert big.run("get") == (0, float((1 << 20) - 1))
        old = app.snapshot(Big, "b1")
        assert decoded == {"big": 1, "n": 1}
        assert reads[-1][0] == 0 and reads[-1][1]["big"] > 8_000_000
        reads.clear()

        finish(proc("bump", times=3))

        assert big.run("get") == (3, float((1 << 20) - 1))  # fresh, without asking
        new = app.snapshot(Big, "b1")
        assert new.version == old.version + 3
        assert new["big"] is old["big"]  # the decoded array is shared, not re-read
        assert decoded == {"big": 1, "n": 2}
        assert len(reads) == 1
        since, changed = reads[0]
        assert since == old.version
        assert set(changed) == {"n"}  # only the small key came over
        assert sum(changed.values()) < 1000
        assert not app.executor_running
    finally:
        app.close()


# -- d. many processes, many instances, one counter each ----------------------------------


@pytest.mark.slow
def test_concurrent_processes_lose_and_double_no_update(
    proc: Callable[..., subprocess.Popen[str]], store: SQLiteStore, tmp_path: Path
) -> None:
    n, instances, workers = 300, ["c0", "c1"], ["p0", "p1", "p2"]
    go = tmp_path / "go"
    children = [proc("count", who=w, instances=instances, n=n, go=str(go), lease=10.0) for w in workers]
    for w in workers:  # all of them start enqueueing at once
        wait_for((tmp_path / f"go.{w}").exists, 20, f"process {w} to be ready")
    go.write_text("go")
    reports = [finish(child, timeout=60) for child in children]

    # Every op was committed by exactly one process, and no process ever ran
    # an instance that another one held.
    assert sum(r["committed"] for r in reports) == n * len(instances) * len(workers)
    assert sum(r["lost"] for r in reports) == 0
    for name in instances:
        state = state_of(store, "Counter", name)
        assert state["n"] == n * len(workers)
        expected = {f"{w}:{name}:{i}" for w in workers for i in range(n)}
        assert Counter(state["tags"]) == Counter(expected)  # each exactly once
        # Per-instance FIFO: each process's ops were applied in its enqueue order.
        for w in workers:
            mine = [t for t in state["tags"] if t.startswith(f"{w}:")]
            assert mine == [f"{w}:{name}:{i}" for i in range(n)]
        assert store.pending("Counter", name) == 0


# -- e. idle cost ---------------------------------------------------------------------


@pytest.mark.slow
def test_idle_instances_cost_no_threads_and_no_queries(tmp_path: Path) -> None:
    app = make_app("sqlite", tmp_path, sweep_seconds=0.5, worker_threads=2)
    try:
        C = app.component("Idle")

        @C.init_state
        def setup() -> dict[str, int]:
            return {"n": 0}

        @C.update("inc")
        def inc(state, props):  # type: ignore[no-untyped-def]
            return {"n": state["n"] + 1}

        calls: Counter[str] = Counter()
        verbs = [
            "get_version",
            "read_state",
            "create_instance",
            "commit",
            "list_instances",
            "enqueue",
            "claim",
            "renew",
            "release",
            "pending",
            "last_op_id",
            "failures",
            "cache_get",
            "cache_set",
        ]
        for verb in verbs:
            real = getattr(app.store, verb)

            def counted(*a: Any, _verb: str = verb, _real: Any = real, **kw: Any) -> Any:
                calls[_verb] += 1
                return _real(*a, **kw)

            setattr(app.store, verb, counted)

        def idle_queries() -> Counter[str]:
            # Let any wake-up settle: until 0.3 s pass with nothing but idle claims
            # (a loaded machine can run a late wake-up's work after a fixed pause).
            deadline = time.monotonic() + 10
            while True:
                calls.clear()
                time.sleep(0.3)
                if set(calls) <= {"claim"} or time.monotonic() > deadline:
                    break
            calls.clear()
            time.sleep(1.0)
            return Counter(calls)

        base_threads = threading.active_count()
        first = C("i0")
        first.run("inc", flush_update=True)
        fixed_threads = threading.active_count() - base_threads
        # the executor's update threads and heartbeat, plus the runs-log writer:
        # all per app, none per instance
        assert 1 <= fixed_threads <= app.settings.worker_threads + 2
        one = idle_queries()

        many = [C(f"i{k}") for k in range(1, 200)]
        for inst in many:
            inst.run("inc")
        for inst in many:
            inst.flush_update()
        assert threading.active_count() - base_threads == fixed_threads
        busy = idle_queries()

        # Only the executor's threads poll: about sweep_seconds apart, each one
        # query, whatever the number of instances.
        for counted_calls in (one, busy):
            assert set(counted_calls) <= {"claim"}, counted_calls
            assert counted_calls["claim"] <= 2 * app.settings.worker_threads / 0.5 + 2
        assert busy["claim"] <= one["claim"] + 2
        assert [i.read_state("n") for i in [first, *many]] == [1] * 200
    finally:
        app.close()
