"""A whole App on the Redis store (a real redis-server, see tests/servers.py):
updates in order, several real processes sharing instances, and a worker
killed mid-update whose op another process finishes exactly once.

Every child runs ``proc.py`` (written below into the test's folder) with the
same component code, the same store URL and the same TIDAL_SECRET_KEY."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tidal
from tidal.codec import Codec, key_context, state_context
from tidal.config import Settings
from tidal.engine.executor import Executor
from tidal.stores.redis import RedisStore

SECRET = "redis-app-test-secret-key-0123456789"

PROC = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    import tidal

    mode, url, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    app = tidal.App(
        "rd",
        store=url,
        settings=tidal.Settings(lease_seconds=args.get("lease", 1.0), sweep_seconds=0.05),
    )

    Log = app.component("Log")

    @Log.init_state
    def log_setup():
        return {"items": [], "other": "untouched"}

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
        return {"n": state["n"] + 1, "tags": state["tags"] + [props["tag"]]}

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


def decode(raw: bytes, component: str, instance: str, key: str) -> Any:
    return Codec(SECRET.encode()).loads(raw, context=key_context(state_context(component, instance), key))


def state_of(store: RedisStore, component: str, instance: str) -> dict[str, Any]:
    read = store.read_state(component, instance)
    assert read is not None, f"{component}/{instance} does not exist"
    return {k: decode(v, component, instance, k) for k, v in read.changed.items()}


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    """The test's own view of the children's store."""
    s = RedisStore.from_url(redis_url)
    yield s
    s.close()


@pytest.fixture
def proc(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``proc.py`` in a given mode; every child is killed at the end."""
    script = tmp_path / "proc.py"
    script.write_text(PROC)
    env = {**os.environ, "TIDAL_SECRET_KEY": SECRET, "TIDAL_HOME": str(tmp_path / "home")}
    children: list[subprocess.Popen[str]] = []

    def start(mode: str, **args: Any) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, str(script), mode, redis_url, json.dumps(args)],
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


def ready_index(store: RedisStore, component: str) -> dict[str, float]:
    """G:ready of a component: the instances claim still looks at."""
    entries = store.client.zrange(store.keys.of_component("ready", component), 0, -1, withscores=True)
    return {name.decode(): score for name, score in entries}


# -- one process ----------------------------------------------------------------------


def test_updates_run_in_order_and_flush_waits_for_them(redis_url: str, tmp_path: Path) -> None:
    app = tidal.App(
        "rd", store=redis_url, home=tmp_path / "home", settings=Settings(lease_seconds=2.0, sweep_seconds=0.05)
    )
    try:
        assert isinstance(app.store, RedisStore)
        C = app.component("Counter")

        @C.init_state
        def setup() -> dict[str, Any]:
            return {"n": 0, "seen": []}

        @C.serve("inc")
        def read(state, props):  # type: ignore[no-untyped-def]
            return state["n"]

        @C.update("inc")
        def inc(state, props):  # type: ignore[no-untyped-def]
            return {"n": state["n"] + 1, "seen": [*state["seen"], props["i"]]}

        a, b = C("a"), C("b")
        for i in range(50):
            a.run("inc", props={"i": i})
            b.run("inc", props={"i": 100 + i})
        a.flush_update()
        b.flush_update()
        assert a.read_state("n") == 50 and b.read_state("n") == 50
        assert a.read_state("seen") == list(range(50))  # per-instance FIFO
        assert b.read_state("seen") == list(range(100, 150))
        assert a.run("inc", props={"i": 50}, flush_update=True) == 50  # serve saw the state before its update
        assert a.run("inc", props={"i": 51}) == 51
        assert a.get_version() > 1
        assert app.store.pending("Counter", "a") <= 1
        a.flush_update()
        assert app.store.pending("Counter", "a") == 0
        assert sorted(app.store.list_instances("Counter")) == ["a", "b"]
        assert ready_index(app.store, "Counter") == {}  # drained instances leave the claim index
    finally:
        app.close()


def test_the_update_thread_takes_the_version_from_its_claim_and_reads_it_only_after_a_conflict(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tidal.App("rv", store=redis_url, home=tmp_path / "home", settings=Settings(sweep_seconds=0.05))
    try:
        C = app.component("Counter")

        @C.init_state
        def setup() -> dict[str, Any]:
            return {"n": 0}

        @C.update("inc")
        def inc(state, props):  # type: ignore[no-untyped-def]
            return {"n": state["n"] + 1}

        a = C("a", disable_update_task=True)
        store = app.store
        reads: list[str] = []
        real = store.get_version

        def counted(component: str, instance: str) -> int | None:
            reads.append(instance)
            return real(component, instance)

        monkeypatch.setattr(store, "get_version", counted)
        executor = Executor(app, threads=1)
        for i in range(3):
            a.run("inc", props={"i": i})
            assert executor.run_once() == 1
        assert a.read_state("n") == 3
        assert reads.count("a") <= 1  # the reader's own, none for the three batches
        # The state moved under a claim: the commit is refused, and only then
        # is the version read from the store again.
        a.run("inc", props={"i": 3})
        held = store.claim(["Counter"], executor.owner, 30, 10)
        assert held is not None
        store.commit("Counter", "a", {"n": app.codec.dumps(10)})
        reads.clear()
        executor.process(held)
        assert reads == ["a"]
        assert a.read_state("n") == 11
    finally:
        app.close()


# -- several processes ------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_two_instances_count_exactly(
    proc: Callable[..., subprocess.Popen[str]], store: RedisStore, tmp_path: Path
) -> None:
    n, instances, workers = 200, ["c0", "c1"], ["p0", "p1"]
    go = tmp_path / "go"
    children = [proc("count", who=w, instances=instances, n=n, go=str(go), lease=10.0) for w in workers]
    for w in workers:  # both start enqueueing at once
        wait_for((tmp_path / f"go.{w}").exists, 30, f"process {w} to be ready")
    go.write_text("go")
    reports = [finish(child, timeout=60) for child in children]

    # Every op was committed by exactly one process, and no process ever ran
    # an instance that the other one held.
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
        assert store.failures("Counter", name) == []
    assert ready_index(store, "Counter") == {}


@pytest.mark.slow
def test_an_op_in_flight_when_its_worker_is_killed_is_applied_exactly_once(
    proc: Callable[..., subprocess.Popen[str]], store: RedisStore, tmp_path: Path
) -> None:
    marker = tmp_path / "in-op"
    crashing = proc("crash", marker=str(marker))
    wait_for(marker.exists, 30, "the op to start")

    # The op hangs mid-way, holding its lease (renewed by the heartbeat):
    # ops 0-4 are committed, 5 (running), 6 and 7 are queued.
    assert state_of(store, "Log", "log")["items"] == [0, 1, 2, 3, 4]
    # The child queues 6 and 7 while 5 runs: they may be a moment behind the marker.
    wait_for(lambda: store.pending("Log", "log") == 3, 10, "ops 6 and 7 to be queued")
    assert store.claim(["Log"], "test", 1.0, 10) is None  # nobody else may take it
    lease = store.client.hgetall(store.keys.tag("Log", "log") + ":lease")
    assert lease and int(lease[b"x"]) / 1000 > time.time() - 1

    os.kill(crashing.pid, signal.SIGKILL)
    crashing.wait(10)
    assert crashing.returncode == -signal.SIGKILL
    assert store.pending("Log", "log") == 3  # nothing of the killed op was committed
    assert state_of(store, "Log", "log")["items"] == [0, 1, 2, 3, 4]

    started = time.monotonic()
    result = finish(proc("recover"))
    assert time.monotonic() - started < 20
    assert result["elapsed"] < 10  # the lease (1 s) expired and nothing stayed locked
    assert result["items"] == [0, 1, 2, 3, 4, 5, 6, 7]  # each op once, in order
    assert result["other"] == "untouched"
    assert store.pending("Log", "log") == 0
    assert store.failures("Log", "log") == []
    assert not store.client.exists(store.keys.tag("Log", "log") + ":lease")
    assert ready_index(store, "Log") == {}
