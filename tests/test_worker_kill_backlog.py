"""A ``tidal worker`` killed with SIGKILL in the middle of a backlog, on
Redis: every queued op is applied exactly once in the end, none lost and
none applied twice, each instance's in queue order (docs/architecture.md:
"at-least-once delivery, exactly-once effect").

The test queues a backlog of ``append`` ops on several instances (each op
appends its own number to the instance's list, and first notes in a file
that it started), starts worker ``a``, kills it once some instances'
batches are committed and others are running, then starts worker ``b``,
which takes over the killed worker's batches once their lease expires and
drains the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tidal
from tidal.codec import Codec, key_context, state_context
from tidal.stores.redis import RedisStore

SECRET = "worker-kill-backlog-secret-key-0123456789"
LEASE = 2.0
"""The workers' lease (``--lease``): a killed worker's batch is claimable again after it."""
INSTANCES = [f"log{k}" for k in range(6)]
OPS = 40
"""Ops queued per instance."""

KILL_APP = textwrap.dedent(
    """
    import os, time

    from tidal import Component

    Log = Component("Log")

    @Log.init_state
    def setup():
        return {"items": []}

    @Log.update("append")
    def append(state, props):
        with open(os.path.join(os.environ["ATTEMPTS"], f"{os.getpid()}.txt"), "a") as fh:
            fh.write(f"{props['i']}\\n")
        time.sleep(0.01)  # a batch of one instance's ops runs for a while: the kill lands mid-batch
        return {"items": state["items"] + [props["i"]]}
    """
)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def items(store: RedisStore, instance: str) -> list[int]:
    read = store.read_state("Log", instance)
    assert read is not None
    raw = read.changed["items"]
    return list(Codec(SECRET.encode()).loads(raw, context=key_context(state_context("Log", instance), "items")))


def attempted(folder: Path) -> Counter[int]:
    """How often each op started, over every worker process."""
    runs: Counter[int] = Counter()
    for path in folder.glob("*.txt"):
        runs.update(int(line) for line in path.read_text().split())
    return runs


def _never(state: Any, props: Any) -> None:
    raise AssertionError("the test process never applies updates")


@pytest.mark.slow
def test_a_worker_killed_mid_backlog_leaves_every_op_applied_exactly_once(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "killapp.py").write_text(KILL_APP)
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    env = {**os.environ, "TIDAL_SECRET_KEY": SECRET, "TIDAL_HOME": str(tmp_path / "home"), "ATTEMPTS": str(attempts)}

    # The backlog, queued by a process that never applies updates.
    app = tidal.App("default", store=redis_url, home=tmp_path / "home", secret_key=SECRET, runs_log=False)
    Log = app.component("Log")
    Log.init_state(lambda: {"items": []})
    Log.update("append")(_never)
    expected = {name: [k * 1000 + j for j in range(OPS)] for k, name in enumerate(INSTANCES)}
    for j in range(OPS):  # interleaved, as a stream of requests would queue them
        for name in INSTANCES:
            Log(name, disable_update_task=True).run("append", props={"i": expected[name][j]})
    app.close()
    total = OPS * len(INSTANCES)

    store = RedisStore.from_url(redis_url)
    workers: list[subprocess.Popen[bytes]] = []

    def worker(name: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "tidal.cli", "worker", "killapp.py", "--store", redis_url]
        with open(tmp_path / f"{name}.log", "wb") as fh:
            child = subprocess.Popen(
                [*argv, "--lease", str(LEASE), "--threads", "2"],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        workers.append(child)
        return child

    def log(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text(errors="replace")

    try:
        assert sum(store.pending("Log", name) for name in INSTANCES) == total
        a = worker("a")

        def mid_stream() -> bool:
            assert a.poll() is None, f"worker a exited with {a.returncode}:\n{log('a')}"
            started = attempted(attempts)  # read before the state: what started and is still not in it runs now
            applied = {i for name in INSTANCES for i in items(store, name)}
            return 0 < len(applied) < total and bool(set(started) - applied)

        wait_for(mid_stream, 60, "worker a to have committed some ops and be running others")
        a.send_signal(signal.SIGKILL)
        assert a.wait(10) == -signal.SIGKILL
        at_kill = {name: items(store, name) for name in INSTANCES}
        applied_at_kill = sum(len(v) for v in at_kill.values())
        assert 0 < applied_at_kill < total
        assert sum(store.pending("Log", name) for name in INSTANCES) == total - applied_at_kill

        b = worker("b")

        def drained() -> bool:
            assert b.poll() is None, f"worker b exited with {b.returncode}:\n{log('b')}"
            return all(store.pending("Log", name) == 0 for name in INSTANCES)

        wait_for(drained, 60, "worker b to drain the backlog")

        for name in INSTANCES:
            got = items(store, name)
            assert got == expected[name], (
                f"{name}: lost {set(expected[name]) - set(got)}, twice {Counter(got) - Counter(set(got))}"
            )
            assert got[: len(at_kill[name])] == at_kill[name]  # what a committed stayed
            assert store.get_version("Log", name) == 1 + OPS  # one version per applied op, no more
            assert store.failures("Log", name) == []
        runs = attempted(attempts)
        assert set(runs) == {i for ops in expected.values() for i in ops}
        rerun = sorted(i for i, n in runs.items() if n > 1)
        print(f"\napplied {applied_at_kill}/{total} before the kill; {len(rerun)} ops started again after it")
        assert rerun, "the kill landed between batches: no op was re-run (the test did not test the takeover)"
        assert "Traceback" not in log("b"), log("b")
    finally:
        for child in workers:
            if child.poll() is None:
                child.kill()
                child.wait(30)
        store.close()
