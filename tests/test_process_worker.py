"""update_task_type="process": update ops run in a forked child process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app

import tidal


def _counter(app: tidal.App) -> tidal.Component:
    C = app.component("PCounter")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0, "pids": []}

    @C.update("inc")
    def inc(state: Any, props: Any) -> dict[str, Any]:
        pids = state["pids"] if os.getpid() in state["pids"] else [*state["pids"], os.getpid()]
        return {"n": state["n"] + props["k"], "pids": pids}

    return C


def test_updates_run_in_a_child_process(tmp_path: Path) -> None:
    app = make_app("sqlite", tmp_path)
    C = _counter(app)
    with C("p1", update_task_type="process") as c:
        for k in range(1, 101):
            c.run("inc", props={"k": k})
        c.flush_update("inc")
        assert c.read_state("n") == 5050
        pids = c.read_state("pids")
    assert pids and os.getpid() not in pids  # applied elsewhere, not in this process
    assert app._executor is None  # no update threads were started here
    app.close()


def test_process_mode_needs_a_shared_store(tmp_path: Path) -> None:
    app = make_app("memory", tmp_path)
    C = _counter(app)
    with pytest.raises(tidal.ConfigError, match="memory://"):
        C("p1", update_task_type="process")
    app.close()


def test_failures_in_the_child_reach_flush_update(tmp_path: Path) -> None:
    app = make_app("sqlite", tmp_path)
    C = app.component("PFail")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0}

    @C.update("inc")
    def inc(state: Any, props: Any) -> dict[str, Any]:
        if props["k"] == 2:
            raise RuntimeError("two is not welcome")
        return {"n": state["n"] + props["k"]}

    with C("p1", update_task_type="process") as c:
        for k in (1, 2, 3):
            c.run("inc", props={"k": k})
        with pytest.raises(tidal.UpdateFailedError, match="two is not welcome"):
            c.flush_update("inc")
        assert c.read_state("n") == 4
    app.close()


def test_child_exits_when_the_parent_dies(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, tidal
            app = tidal.App("t", store="sqlite:///{tmp_path / "p.db"}", home="{tmp_path / "home"}")
            C = app.component("K")
            @C.update("x")
            def x(state, props):
                return {{"v": 1}}
            c = C("k", update_task_type="process")
            print(app._process_worker.pid, flush=True)
            os._exit(0)  # no clean shutdown: the child must notice on its own
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    child = int(out.stdout.strip())
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        # the child is not ours to reap; a zombie of init also counts as gone
        status = Path(f"/proc/{child}/status")
        if status.exists() and "zombie" in status.read_text():
            return
        time.sleep(0.1)
    pytest.fail(f"worker child {child} still running after its parent died")


def test_flush_update_returns_after_the_child_process_logged_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child applies the ops and logs their runs in its own runs log:
    flush_update has it write them, so a query right after sees them all."""
    from tidal.engine.runlog import RunLog

    # No background writer in either process (the child is a fork): runs
    # are written only when someone flushes the runs log.
    monkeypatch.setattr(RunLog, "_start", lambda self: None)
    app = make_app("sqlite", tmp_path)
    C = _counter(app)
    try:
        with C("p1", update_task_type="process") as c:
            for k in (1, 2, 3):
                c.run("inc", props={"k": k})
                c.flush_update()
                rows = app.sql("SELECT instance, status FROM runs WHERE kind = 'update' AND flow = 'inc'")
                assert [(r["instance"], r["status"]) for r in rows] == [("p1", "ok")] * k
    finally:
        app.close()


def test_an_app_without_a_runs_log_has_none_in_its_update_process_either(tmp_path: Path) -> None:
    app = tidal.App("quiet", store=f"sqlite:///{tmp_path / 'quiet.db'}", home=tmp_path / "home", runs_log=False)
    C = _counter(app)
    try:
        with C("p1", update_task_type="process") as c:
            c.run("inc", props={"k": 1})
            c.flush_update()
            assert c.read_state("n") == 1
    finally:
        app.close()
    # After the child's exit too (it writes what it buffered when it stops).
    db = sqlite3.connect(tmp_path / "quiet.db")
    try:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone() == (0,)
    finally:
        db.close()
