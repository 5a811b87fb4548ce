"""Freshness: queue depth and update lag per component, from Python and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tidal
from tidal.engine.executor import Executor


def slow_counter(app: tidal.App) -> tidal.Component:
    C = app.component("Fresh")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0}

    @C.update("inc")
    def inc(state: Any, props: Any) -> dict[str, Any]:
        if props.get("fail"):
            raise RuntimeError("boom")
        return {"n": state["n"] + 1}

    return C


def test_backlog_shows_as_pending_then_lag_after_it_drains(app: tidal.App) -> None:
    C = slow_counter(app)
    producer = C("p", disable_update_task=True)  # only enqueues: a backlog builds
    for _ in range(5):
        producer.run("inc")
    producer.run("inc", props={"fail": True})
    [before] = app.freshness(["Fresh"])
    assert (before.pending, before.instances_waiting, before.failed, before.updates) == (6, 1, 0, 0)
    assert before.oldest_wait_s is not None and before.oldest_wait_s >= 0
    assert before.lag_p50_ms is None

    Executor(app, threads=1).drain()
    [after] = app.freshness(["Fresh"])
    assert (after.pending, after.instances_waiting, after.failed) == (0, 0, 1)
    assert after.oldest_wait_s is None
    assert after.updates == 6  # 5 applied + 1 failed: all update runs of the window
    assert after.lag_p50_ms is not None and after.lag_p99_ms is not None
    assert 0 <= after.lag_p50_ms <= after.lag_p99_ms


def test_cli_reports_freshness_and_fails_on_failed_ops(tmp_path: Path) -> None:
    env = {**os.environ, "TIDAL_HOME": str(tmp_path / "home"), "TIDAL_SECRET_KEY": "fresh-secret-0123456789abc"}
    env.pop("TIDAL_STORE", None)
    app = tidal.App("fresh", home=tmp_path / "home", secret_key=env["TIDAL_SECRET_KEY"])
    C = slow_counter(app)
    with C("a") as a:
        a.run("inc", flush_update=True)
    app.close()
    out = subprocess.run(
        [sys.executable, "-m", "tidal.cli", "freshness", "Fresh", "--app", "fresh", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    assert row["component"] == "Fresh" and row["pending"] == 0 and row["updates"] == 1
    assert row["lag_p50_ms"] is not None

    app = tidal.App("fresh", home=tmp_path / "home", secret_key=env["TIDAL_SECRET_KEY"])
    C = slow_counter(app)
    with C("a") as a:
        a.run("inc", props={"fail": True})
        with pytest.raises(tidal.UpdateFailedError):
            a.flush_update()
    app.close()
    failing = subprocess.run(
        [sys.executable, "-m", "tidal.cli", "freshness", "Fresh", "--app", "fresh"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failing.returncode == 1
    assert "Fresh" in failing.stdout
