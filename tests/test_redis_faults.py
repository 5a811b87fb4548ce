"""Faults and load on the Redis store, with real processes and a real
redis-server (see tests/servers.py): ``tidal worker`` processes killed with
SIGKILL or frozen with SIGSTOP mid-op, a Redis server that crashes and
restarts under a stream of updates, many producers and workers counting at
once, and bad input written straight into the store.

Update ops are applied only by ``python -m tidal.cli worker faultapp.py``
processes (the file below, written into the test's folder). Ops are enqueued
either by this test process or by ``producer.py`` processes, all through
instances made with ``disable_update_task=True``; everyone shares the same
store URL and TIDAL_SECRET_KEY.

A ``gate`` op (props ``{"gate": path}``) appends the pid of every process that
runs it to ``path.attempts``; the first one to run it also creates ``path``
and then blocks until ``path.release`` exists, so the test can catch a worker
mid-op and see who ran the op again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers import RedisServer, start_redis

import tidal
from tidal.codec import Codec, key_context, state_context
from tidal.component import Component
from tidal.stores.redis import RedisStore

SECRET = "redis-faults-test-secret-key-0123456789"
OTHER_SECRET = "some-other-apps-secret-key-9876543210"
LEASE = 1.0
"""Lease of the workers in the kill and stop tests, in seconds."""

WORKER_APP = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    from tidal import Component

    Log = Component("Log")

    @Log.init_state
    def log_setup():
        return {"items": [], "other": "untouched"}

    @Log.update("append")
    def log_append(state, props):
        gate = props.get("gate")
        if gate:
            with open(gate + ".attempts", "a") as fh:
                fh.write(f"{os.getpid()}\\n")
            try:
                fd = os.open(gate, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                pass  # a later attempt: run through
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                release = Path(gate + ".release")
                while not release.exists():
                    time.sleep(0.01)
        return {"items": state["items"] + [props["i"]]}

    Counter = Component("Counter")

    @Counter.init_state
    def counter_setup():
        return {"n": 0, "tags": []}

    @Counter.update("inc")
    def counter_inc(state, props):
        return {"n": state["n"] + 1, "tags": state["tags"] + [props["tag"]]}
    """
)

PRODUCER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import tidal

    url, args = sys.argv[1], json.loads(sys.argv[2])
    app = tidal.App("faults", store=url, runs_log=False)
    Counter = app.component("Counter")

    @Counter.init_state
    def counter_setup():
        return {"n": 0, "tags": []}

    @Counter.update("inc")
    def counter_inc(state, props):
        raise AssertionError("producers never apply updates")

    counters = [Counter(name, disable_update_task=True) for name in args["instances"]]
    Path(args["ready"]).write_text("ready")
    go = Path(args["go"])
    while not go.exists():
        time.sleep(0.005)
    stop = Path(args["stop"])
    out = open(args["log"], "a", buffering=1)
    i = 0
    while i < args["n"] and not stop.exists():
        for c in counters:
            tag = f"{args['who']}:{c.instance_id}:{i}"
            try:
                c.run("inc", props={"tag": tag})
            except Exception as exc:  # not acknowledged: recorded, not retried
                out.write(json.dumps({"tag": tag, "ok": False, "error": repr(exc)[:500]}) + "\\n")
                time.sleep(0.02)
            else:
                out.write(json.dumps({"tag": tag, "ok": True}) + "\\n")
        i += 1
        time.sleep(args.get("pause", 0))
    out.close()
    app.close()
    """
)


# -- helpers --------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, *, step: float = 0.01) -> float:
    """Poll until ``predicate()``; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - start


@dataclass
class Proc:
    """A child process whose stdout and stderr go to ``logfile``."""

    popen: subprocess.Popen[bytes]
    logfile: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        os.kill(self.popen.pid, sig)


class Procs:
    """Starts workers and producers in the test's folder; kills them all at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "faultapp.py").write_text(WORKER_APP)
        (folder / "producer.py").write_text(PRODUCER)
        self.env = {**os.environ, "TIDAL_SECRET_KEY": SECRET, "TIDAL_HOME": str(folder / "home")}
        self.children: list[Proc] = []

    def _start(self, name: str, argv: list[str]) -> Proc:
        logfile = self.folder / f"{name}.log"
        with open(logfile, "wb") as fh:
            popen = subprocess.Popen(
                argv, cwd=self.folder, env=self.env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT
            )
        child = Proc(popen, logfile)
        self.children.append(child)
        return child

    def worker(self, name: str, url: str, *, lease: float = LEASE, threads: int = 1, wait: bool = True) -> Proc:
        """``tidal worker faultapp.py`` on ``url``; by default waits until it has loaded the app."""
        argv = [sys.executable, "-m", "tidal.cli", "worker", "faultapp.py", "--store", url]
        child = self._start(name, [*argv, "--lease", str(lease), "--threads", str(threads)])
        if wait:
            self.wait_ready(child)
        return child

    def wait_ready(self, child: Proc) -> None:
        def ready() -> bool:
            assert child.alive(), f"worker exited with {child.popen.returncode}:\n{child.log()}"
            return "worker on redis://" in child.log()

        wait_for(ready, 30, "a worker to start", step=0.02)

    def producer(self, name: str, url: str, **args: Any) -> Proc:
        args.setdefault("ready", str(self.folder / f"{name}.ready"))
        args.setdefault("go", str(self.folder / "go"))
        args.setdefault("stop", str(self.folder / "stop"))
        args.setdefault("log", str(self.folder / f"{name}.acks"))
        return self._start(name, [sys.executable, "producer.py", url, json.dumps({"who": name, **args})])

    def close(self) -> None:
        for child in self.children:
            if child.alive():
                with_signal(child, signal.SIGCONT)
                child.popen.kill()
            child.popen.wait(30)


def with_signal(child: Proc, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.signal(sig)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.close()


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    """The test's own view of the store (raw keys through ``store.client``)."""
    s = RedisStore.from_url(redis_url)
    yield s
    s.close()


def _never(state: Any, props: Any) -> dict[str, Any]:
    raise AssertionError("the test process never applies updates")


def client_app(url: str, home: Path, secret: str = SECRET) -> tuple[tidal.App, Component, Component]:
    """An App of the test's own with the workers' components (their updates
    are never run here: every instance is made with disable_update_task)."""
    app = tidal.App("faults", store=url, home=home, secret_key=secret, runs_log=False)
    Log = app.component("Log")
    Log.init_state(lambda: {"items": [], "other": "untouched"})
    Log.update("append")(_never)
    Ctr = app.component("Counter")
    Ctr.init_state(lambda: {"n": 0, "tags": []})
    Ctr.update("inc")(_never)
    return app, Log, Ctr


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[tuple[tidal.App, Component, Component]]:
    app, Log, Ctr = client_app(redis_url, tmp_path / "home")
    yield app, Log, Ctr
    app.close()


def state_of(store: RedisStore, component: str, instance: str) -> dict[str, Any]:
    read = store.read_state(component, instance)
    assert read is not None, f"{component}/{instance} does not exist"
    codec = Codec(SECRET.encode())
    place = state_context(component, instance)
    return {k: codec.loads(v, context=key_context(place, k)) for k, v in read.changed.items()}


def items(store: RedisStore, instance: str = "log") -> list[int]:
    return list(state_of(store, "Log", instance)["items"])


def attempts(gate: Path) -> list[int]:
    """Pids of the processes that ran the gate op, in order."""
    path = Path(str(gate) + ".attempts")
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def release(gate: Path) -> None:
    Path(str(gate) + ".release").write_text("go")


def op_key(store: RedisStore, component: str, instance: str, op_id: int) -> str:
    return f"{store.keys.tag(component, instance)}:op:{op_id}"


# -- 1. a worker killed mid-op --------------------------------------------------------


@pytest.mark.slow
def test_a_worker_killed_mid_op_has_its_op_rerun_by_another_worker_exactly_once(
    procs: Procs, store: RedisStore, client: tuple[tidal.App, Component, Component], redis_url: str, tmp_path: Path
) -> None:
    _, Log, _ = client
    log = Log("log", disable_update_task=True)
    a = procs.worker("a", redis_url)
    for i in range(3):
        log.run("append", props={"i": i})
    wait_for(lambda: items(store) == [0, 1, 2], 10, "worker a to apply the first ops")

    gate = tmp_path / "gate"
    log.run("append", props={"i": 3, "gate": str(gate)})
    log.run("append", props={"i": 4})
    log.run("append", props={"i": 5})
    wait_for(gate.exists, 10, "worker a to start the gate op")
    assert attempts(gate) == [a.pid]

    # A second worker starts and waits: a's heartbeat keeps renewing the
    # lease past its length, so b cannot take the op while a is alive.
    b = procs.worker("b", redis_url)
    time.sleep(2 * LEASE)
    assert attempts(gate) == [a.pid]
    assert store.claim(["Log"], "test", LEASE, 10) is None
    lease = store.client.hgetall(store.keys.tag("Log", "log") + ":lease")
    assert lease and int(lease[b"x"]) / 1000 > time.time()
    assert items(store) == [0, 1, 2]  # nothing of the op in flight is visible
    assert store.pending("Log", "log") == 3

    a.signal(signal.SIGKILL)
    a.popen.wait(10)
    assert a.popen.returncode == -signal.SIGKILL
    took = wait_for(lambda: len(items(store)) >= 6, 15, "worker b to re-run the killed worker's ops")
    assert took < LEASE + 1.0 + 4.0  # lease expiry + b's idle sweep (1 s) + slack for a loaded machine

    assert attempts(gate) == [a.pid, b.pid]  # the op ran again, in the other process
    state = state_of(store, "Log", "log")
    assert state == {"items": [0, 1, 2, 3, 4, 5], "other": "untouched"}  # each op once, in order
    assert store.get_version("Log", "log") == 7  # 1 + one bump per applied op
    assert store.pending("Log", "log") == 0
    assert store.failures("Log", "log") == []
    assert not store.client.exists(store.keys.tag("Log", "log") + ":lease")
    assert b.alive()
    assert "Traceback" not in b.log() and "WARNING" not in b.log(), b.log()


# -- 2. a worker frozen past its lease -------------------------------------------------


@pytest.mark.slow
def test_a_frozen_worker_that_wakes_after_a_takeover_cannot_commit_and_says_so(
    procs: Procs, store: RedisStore, client: tuple[tidal.App, Component, Component], redis_url: str, tmp_path: Path
) -> None:
    _, Log, _ = client
    log = Log("log", disable_update_task=True)
    a = procs.worker("a", redis_url)
    gate = tmp_path / "gate"
    log.run("append", props={"i": 0, "gate": str(gate)})
    log.run("append", props={"i": 1})
    wait_for(gate.exists, 10, "worker a to start the gate op")

    a.signal(signal.SIGSTOP)  # frozen mid-op: no heartbeat, so its lease runs out
    b = procs.worker("b", redis_url)
    wait_for(lambda: items(store) == [0, 1], 15, "worker b to take over and commit")
    assert attempts(gate) == [a.pid, b.pid]
    version = store.get_version("Log", "log")
    assert version == 3

    # a wakes up, finishes its (stale) run of the same ops, and tries to commit.
    release(gate)
    a.signal(signal.SIGCONT)
    wait_for(lambda: "not committing" in a.log(), 10, "worker a to log its refused commit")
    refused = [line for line in a.log().splitlines() if "not committing" in line]
    assert len(refused) == 1, a.log()
    assert "WARNING" in refused[0]
    # One batch, of op 0 or of ops 0 and 1 (op 1 may be queued after a's claim).
    assert re.search(r"not committing [12] op\(s\): lease on Log/log was lost \(expired or taken over\)", refused[0])
    assert items(store) == [0, 1]  # applied once: a's run left no trace
    assert store.get_version("Log", "log") == version
    assert store.pending("Log", "log") == 0
    assert store.failures("Log", "log") == []

    # Both workers keep going: the next op is applied once, by one of them.
    assert a.alive() and b.alive()
    log.run("append", props={"i": 2})
    wait_for(lambda: store.pending("Log", "log") == 0, 10, "the next op")
    assert items(store) == [0, 1, 2]
    assert "Traceback" not in a.log() + b.log()


# -- 3. the Redis server restarts under a stream of updates -----------------------------


def read_acks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


@pytest.mark.slow
def test_no_acknowledged_update_is_lost_when_redis_restarts_and_everyone_reconnects(
    procs: Procs, tmp_path: Path
) -> None:
    server: RedisServer = start_redis(tmp_path / "data", appendonly=True, appendfsync="always")
    try:
        _restart_under_load(procs, server, tmp_path)
    finally:
        server.stop()


def _restart_under_load(procs: Procs, server: RedisServer, tmp_path: Path) -> None:
    url = server.url() + "?namespace=restart"
    instances = ["c0", "c1", "c2"]
    workers = [procs.worker(f"w{k}", url, lease=2.0, threads=1) for k in range(2)]
    producer = procs.producer("p", url, instances=instances, n=10**9)
    wait_for((tmp_path / "p.ready").exists, 30, "the producer to start")
    (tmp_path / "go").write_text("go")
    acks = tmp_path / "p.acks"

    def acked() -> int:
        return sum(1 for a in read_acks(acks) if a["ok"])

    def cycle(how: str) -> float:
        """Stop the server (``kill``: SIGKILL; ``shutdown``: SIGTERM) under load,
        bring it back on the same port; returns how long it was down."""
        before = acked()
        wait_for(lambda: acked() >= before + 150, 30, "updates to flow")
        port = server.port
        t0 = time.monotonic()
        getattr(server, how)()
        time.sleep(0.5)
        server.start()
        down = time.monotonic() - t0
        assert server.port == port  # same address: clients reconnect by themselves
        assert producer.alive() and all(w.alive() for w in workers)
        return down

    downs = [cycle("kill"), cycle("shutdown")]
    resumed = acked()
    wait_for(lambda: acked() >= resumed + 150, 30, "updates to flow after the restarts")
    (tmp_path / "stop").write_text("stop")
    producer.popen.wait(30)
    assert producer.popen.returncode == 0, producer.log()

    store = RedisStore.from_url(url)
    try:
        wait_for(
            lambda: all(store.pending("Counter", i) == 0 for i in instances), 30, "the workers to drain the queues"
        )
        applied: Counter[str] = Counter()
        for name in instances:
            state = state_of(store, "Counter", name)
            assert state["n"] == len(state["tags"])
            applied.update(state["tags"])
            assert store.failures("Counter", name) == []
    finally:
        store.close()

    calls = read_acks(acks)
    ok = [c["tag"] for c in calls if c["ok"]]
    failed = [c["tag"] for c in calls if not c["ok"]]
    assert len(set(ok)) == len(ok)
    lost = [t for t in ok if applied[t] == 0]
    doubled = [t for t in ok if applied[t] > 1]
    failed_applied = Counter(applied[t] for t in failed)
    strays = set(applied) - set(ok) - set(failed)
    summary = {
        "down_s": [round(d, 2) for d in downs],
        "acknowledged": len(ok),
        "not_acknowledged": len(failed),
        "not_acknowledged_applied_times": dict(failed_applied),
        "acknowledged_lost": len(lost),
        "acknowledged_applied_twice": len(doubled),
        "errors_seen_by_producer": sorted({c["error"][:120] for c in calls if not c["ok"]})[:5],
        "worker_store_errors": sum(w.log().count("store error in update loop") for w in workers),
        "worker_lost_leases": sum(w.log().count("not committing") for w in workers),
    }
    print("redis restart:", json.dumps(summary))
    assert not strays
    assert lost == [], f"acknowledged updates lost: {lost[:10]} ({summary})"
    assert doubled == [], f"acknowledged updates applied twice: {doubled[:10]} ({summary})"
    assert all(times <= 1 for times in failed_applied), summary  # an unacknowledged one: at most once
    # The same worker processes applied the updates acknowledged after the restarts.
    assert all(w.alive() for w in workers)


# -- 4. many producers, many instances, several workers ---------------------------------


@pytest.mark.slow
def test_producers_and_worker_processes_count_exactly(procs: Procs, store: RedisStore, redis_url: str) -> None:
    producers, instances, per = ["p0", "p1", "p2", "p3"], [f"c{k}" for k in range(5)], 100
    workers = [procs.worker(f"w{k}", redis_url, lease=5.0, threads=2, wait=False) for k in range(3)]
    children = [procs.producer(p, redis_url, instances=instances, n=per) for p in producers]
    for w in workers:
        procs.wait_ready(w)
    for p in producers:
        wait_for((procs.folder / f"{p}.ready").exists, 30, f"producer {p} to start")
    (procs.folder / "go").write_text("go")  # all producers enqueue at once
    for child in children:
        child.popen.wait(60)
        assert child.popen.returncode == 0, child.log()
    for p in producers:
        calls = read_acks(procs.folder / f"{p}.acks")
        assert len(calls) == per * len(instances) and all(c["ok"] for c in calls)

    total = len(producers) * per
    wait_for(
        lambda: all(store.get_version("Counter", i) == 1 + total for i in instances), 60, "the workers to catch up"
    )
    for name in instances:
        state = state_of(store, "Counter", name)
        assert state["n"] == total
        assert Counter(state["tags"]) == Counter(f"{p}:{name}:{i}" for p in producers for i in range(per))
        for p in producers:  # per-instance FIFO: each producer's ops in its order
            assert [t for t in state["tags"] if t.startswith(f"{p}:")] == [f"{p}:{name}:{i}" for i in range(per)]
        assert store.pending("Counter", name) == 0
        assert store.failures("Counter", name) == []
    assert store.client.zcard(store.keys.of_component("ready", "Counter")) == 0
    assert all(w.alive() for w in workers)
    assert "Traceback" not in "".join(w.log() for w in workers)


@pytest.mark.slow
def test_workers_and_serving_processes_join_and_leave_under_load_and_every_count_is_exact(
    procs: Procs, store: RedisStore, redis_url: str
) -> None:
    """Scale out and in while updates stream: a second producer (a serving
    process) joins; workers join, one leaves gracefully (SIGTERM: it
    finishes its batch and exits 0), one is killed (its batch is re-run after
    its lease); the last worker drains everything, and every acknowledged
    update is applied exactly once, in each producer's order."""
    instances = ["c0", "c1", "c2"]
    acks = {p: procs.folder / f"{p}.acks" for p in ("p0", "p1")}

    def acked() -> int:
        return sum(1 for path in acks.values() for a in read_acks(path) if a["ok"])

    def more(n: int, what: str) -> None:
        start = acked()
        wait_for(lambda: acked() >= start + n, 60, what)

    w0 = procs.worker("w0", redis_url, lease=LEASE, threads=1)
    # Paced (a round of three updates per 10 ms each), so that the phases
    # below overlap the stream rather than a backlog.
    p0 = procs.producer("p0", redis_url, instances=instances, n=10**9, pause=0.01)
    wait_for((procs.folder / "p0.ready").exists, 30, "producer p0 to start")
    (procs.folder / "go").write_text("go")
    more(150, "updates with one worker")
    p1 = procs.producer("p1", redis_url, instances=instances, n=10**9, pause=0.01)  # a serving process joins
    w1 = procs.worker("w1", redis_url, lease=LEASE, threads=2)  # and a worker
    more(150, "updates with two producers and two workers")
    with_signal(w0, signal.SIGTERM)  # leaves gracefully
    assert w0.popen.wait(30) == 0, w0.log()
    w2 = procs.worker("w2", redis_url, lease=LEASE, threads=1)
    more(150, "updates after w0 left and w2 joined")
    with_signal(w1, signal.SIGKILL)  # leaves the hard way, batch in hand or not
    w1.popen.wait(30)
    more(150, "updates after w1 was killed")
    (procs.folder / "stop").write_text("stop")
    for producer in (p0, p1):
        assert producer.popen.wait(30) == 0, producer.log()
    wait_for(lambda: all(store.pending("Counter", i) == 0 for i in instances), 60, "w2 to drain the queues")

    applied: Counter[str] = Counter()
    for name in instances:
        state = state_of(store, "Counter", name)
        assert state["n"] == len(state["tags"])
        applied.update(state["tags"])
        for p in acks:  # per-instance FIFO: each producer's ops in the order it queued them
            mine = [t for t in state["tags"] if t.startswith(f"{p}:")]
            assert mine == sorted(mine, key=lambda t: int(t.rsplit(":", 1)[1]))
        assert store.failures("Counter", name) == []
    ok = [a["tag"] for path in acks.values() for a in read_acks(path) if a["ok"]]
    assert all(a["ok"] for path in acks.values() for a in read_acks(path))  # no call failed
    print("elastic:", len(ok), "acknowledged updates")
    assert len(ok) > 600 and set(applied) == set(ok)
    assert [t for t in ok if applied[t] != 1] == []  # none lost, none applied twice
    assert w2.alive() and "Traceback" not in w0.log() + w2.log()


# -- 5. bad input on the wire -------------------------------------------------------------


@pytest.mark.slow
def test_malformed_ops_and_foreign_keys_are_rejected_and_logged_and_the_worker_goes_on(
    procs: Procs, store: RedisStore, client: tuple[tidal.App, Component, Component], redis_url: str, tmp_path: Path
) -> None:
    app, Log, _ = client
    raw = store.client
    log = Log("bad", disable_update_task=True)

    def enqueue(i: int) -> int:
        log.run("append", props={"i": i})
        return store.last_op_id("Log", "bad")

    enqueue(0)
    bad: dict[int, str] = {}  # op id -> what its failure must say
    op = enqueue(1)
    raw.hset(op_key(store, "Log", "bad", op), "p", b"\x00\xffnot a payload")
    bad[op] = "not in Tidal's format; refusing to load it"

    other, OtherLog, _ = client_app(redis_url, tmp_path / "other-home", secret=OTHER_SECRET)
    try:
        OtherLog("bad", disable_update_task=True).run("append", props={"i": 2})  # signed with another key
    finally:
        other.close()
    bad[store.last_op_id("Log", "bad")] = "HMAC check failed"

    op = enqueue(3)
    raw.hset(op_key(store, "Log", "bad", op), "p", app.codec.dumps("signed, but not an op"))
    bad[op] = "holds str, not props"
    op = enqueue(4)
    raw.hdel(op_key(store, "Log", "bad", op), "p")
    bad[op] = f"op {op} is malformed in the store (no payload (p)); it was not run"
    no_flow = [enqueue(5), enqueue(6)]
    raw.hdel(op_key(store, "Log", "bad", no_flow[0]), "f", "t")
    bad[no_flow[0]] = f"op {no_flow[0]} is malformed in the store (no flow (f); no enqueue time (t)); it was not run"
    raw.delete(op_key(store, "Log", "bad", no_flow[1]))
    bad[no_flow[1]] = "(no flow (f); no payload (p); no enqueue time (t))"
    op = enqueue(7)
    raw.hset(op_key(store, "Log", "bad", op), mapping={"t": "yesterday", "n": "many"})
    bad[op] = "(no enqueue time (t); attempts (n) not a count)"
    enqueue(8)

    # Foreign keys under the namespace: names the store never uses, and a
    # claim index entry and an instance listing for instances that do not exist.
    g, ns = store.keys.global_tag, store.namespace
    foreign: dict[str, Any] = {
        f"{g}:junk": b"x",
        f"{ns}:whatever": b"\x00\x01",
        f"{g}:ready": b"not a zset",
        f"{store.keys.tag('Log', 'bad')}:extra": b"y",
        f"{store.keys.tag('Log', 'ghost')}:stuff": b"z",
        f"{ns}:cache:" + "0" * 40: b"not a cached result",
    }
    for key, value in foreign.items():
        raw.set(key, value)
    raw.hset(f"{g}:ready:Nope", "a", "b")  # a component this app does not run, as a hash
    raw.zadd(store.keys.of_component("ready", "Log"), {"ghost": 0})
    raw.sadd(store.keys.of_component("instances", "Log"), "ghost")

    w = procs.worker("w", redis_url, lease=2.0)
    wait_for(lambda: store.pending("Log", "bad") == 0, 15, "the worker to go through the queue")
    assert items(store, "bad") == [0, 8]
    failures = {f.op_id: f for f in store.failures("Log", "bad")}
    assert set(failures) == set(bad)
    for op_id, says in bad.items():
        assert says in failures[op_id].error, (op_id, failures[op_id].error)
        assert failures[op_id].failed_at > time.time() - 60
    assert {op_id: f.flow for op_id, f in failures.items() if op_id not in no_flow} == dict.fromkeys(
        set(bad) - set(no_flow), "append"
    )

    # Each bad op was logged by the worker, with its reason; nothing else went wrong.
    text = w.log()
    for op_id, says in bad.items():
        if "malformed" in says or says.startswith("("):
            assert f"op {op_id} is malformed in the store" in text
        else:
            assert f"update op {op_id} of Log/bad failed" in text
        assert says in text
    assert " ERROR " not in text, text  # no "unexpected error" or "store error" in the update loop

    # The worker goes on with later ops; foreign keys are left alone.
    log.run("append", props={"i": 9})
    wait_for(lambda: store.pending("Log", "bad") == 0, 10, "a later good op")
    assert items(store, "bad") == [0, 8, 9]
    for key, value in foreign.items():
        assert raw.get(key) == value
    assert raw.hgetall(f"{g}:ready:Nope") == {b"a": b"b"}
    assert store.list_instances("Log") == ["bad"]
    assert raw.zscore(store.keys.of_component("ready", "Log"), "ghost") is None  # tidied from the claim index
    assert w.alive()

    # An op whose record vanishes while it runs: its commit still applies it
    # once and unqueues it (it must not fail half-way through the commit).
    gate = tmp_path / "gate"
    log.run("append", props={"i": 10, "gate": str(gate)})
    op = store.last_op_id("Log", "bad")
    wait_for(gate.exists, 10, "the worker to start the gate op")
    raw.delete(op_key(store, "Log", "bad", op))
    release(gate)
    wait_for(lambda: store.pending("Log", "bad") == 0, 10, "the gate op's commit")
    assert items(store, "bad") == [0, 8, 9, 10]
    assert store.pending("Log", "bad", flow="append") == 0
    assert set(f.op_id for f in store.failures("Log", "bad")) == set(bad)
    log.run("append", props={"i": 11})
    wait_for(lambda: store.pending("Log", "bad") == 0, 10, "one more op")
    assert items(store, "bad") == [0, 8, 9, 10, 11]
    assert w.alive()
    assert " ERROR " not in w.log()
