"""A serve never sees half an update (docs/architecture.md, "Semantics":
snapshots are built from one consistent read, commits are single
transactions), across processes, on SQLite and on Redis.

One process (``pairapp.py update``) queues and applies ``bump`` ops without
a pause; each writes two keys with the same new value, ``{"a": n, "b": n}``.
Another process (``pairapp.py check``) meanwhile runs the ``check`` serve op
thousands of times (cache bypassed, so the op runs each time on the
process's current snapshot) and counts the serves that saw ``a != b``, and
the serves that saw an older state than the serve before them. Both counts
must be 0, and the checker must have seen the state move many times while
it checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SECRET = "serve-consistency-secret-key-0123456789"
CHECKS = 3000
"""Serves the checker runs at least."""
MOVES = 3000
"""Distinct states the checker goes on until it has seen (or 40 s passed): each
is a snapshot read racing a commit. (Reading the keys of one SQLite snapshot in
separate statements, with no gap between them, gets caught within ~2000.)"""
MOVED = 500
"""Distinct states it must have seen at least: the updates ran while it checked."""

PAIR_APP = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import tidal

    app = tidal.App("pair", runs_log=False, settings=tidal.Settings(lease_seconds=5.0, sweep_seconds=0.1))
    Pair = app.component("Pair")

    @Pair.init_state
    def setup():
        return {"a": 0, "b": 0}

    @Pair.serve("check")
    def check(state, props):
        return [state["a"], state["b"]]

    @Pair.update("bump")
    def bump(state, props):
        n = state["a"] + 1
        return {"a": n, "b": n}

    def update(folder):
        pair = Pair("p")
        pair.run("bump", flush_update=True)
        (folder / "updating").write_text("yes")
        stop, queued = folder / "stop", 1
        while not stop.exists():  # one commit per bump: the state moves as often as it can
            pair.run("bump", flush_update=True)
            queued += 1
        pair.flush_update(timeout=60)
        (folder / "updated.json").write_text(json.dumps({"queued": queued, "a": pair.read_state("a")}))

    def check_serves(folder):
        at_least, moves = int(sys.argv[3]), int(sys.argv[4])
        pair = Pair("p", disable_update_task=True)
        checks = torn = backwards = 0
        seen, last = set(), -1
        deadline = time.monotonic() + 40
        while checks < at_least or (len(seen) < moves and time.monotonic() < deadline):
            a, b = pair.run("check", ignore_cache=True)
            checks += 1
            torn += a != b
            backwards += a < last
            last = a
            seen.add(a)
        (folder / "checked.json").write_text(
            json.dumps({"checks": checks, "torn": torn, "backwards": backwards, "seen": len(seen), "last": last})
        )

    if __name__ == "__main__":
        {"update": update, "check": check_serves}[sys.argv[1]](Path(sys.argv[2]))
        app.close()
    """
)


def wait_for(done: Path, children: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done.exists():
        for child, log in zip(children, logs, strict=True):
            assert child.poll() is None, f"{log.name} exited with {child.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_serves_in_another_process_never_see_half_an_update(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'pair.db'}" if kind == "sqlite" else request.getfixturevalue("redis_url")
    (tmp_path / "pairapp.py").write_text(PAIR_APP)
    env = {**os.environ, "TIDAL_STORE": url, "TIDAL_SECRET_KEY": SECRET, "TIDAL_HOME": str(tmp_path / "home")}
    children: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    def start(mode: str, *args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{mode}.log"
        with open(log, "wb") as fh:
            child = subprocess.Popen(
                [sys.executable, "pairapp.py", mode, str(tmp_path), *args],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        children.append(child)
        logs.append(log)
        return child

    try:
        updater = start("update")
        wait_for(tmp_path / "updating", children, logs, 60, "the updater to start")
        checker = start("check", str(CHECKS), str(MOVES))
        assert checker.wait(90) == 0, logs[1].read_text()
        (tmp_path / "stop").write_text("stop")
        assert updater.wait(90) == 0, logs[0].read_text()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(30)

    checked = json.loads((tmp_path / "checked.json").read_text())
    updated = json.loads((tmp_path / "updated.json").read_text())
    print(f"\n{kind}: {checked}, updater {updated}")
    assert checked["torn"] == 0, f"serves saw a != b: {checked}"
    assert checked["backwards"] == 0, f"serves saw an older state than the serve before them: {checked}"
    assert checked["checks"] >= CHECKS
    assert checked["seen"] >= MOVED, f"the state hardly moved while the checker served: {checked}"
    assert updated["a"] == updated["queued"]  # every bump applied once: a counts them
    assert checked["last"] <= updated["a"]
