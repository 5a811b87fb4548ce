"""The ``tidal`` command, run as a subprocess the way an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TIDAL = [sys.executable, "-m", "tidal.cli"]

APP_FILE = textwrap.dedent(
    """
    from tidal import Component

    Tally = Component("Tally")

    @Tally.init_state
    def setup():
        return {"n": 0}

    @Tally.update("bump")
    def bump(state, props):
        if props.get("fail"):
            raise ValueError("asked to fail")
        return {"n": state["n"] + props["k"]}
    """
)


def tidal(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TIDAL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["TIDAL_HOME"] = str(tmp_path / "home")
    e["TIDAL_SECRET_KEY"] = "cli-test-secret-key-0123456789"
    e.pop("TIDAL_STORE", None)
    e["COLUMNS"] = "250"  # keep rich from wrapping the tables the tests read
    return e


def test_version(tmp_path: Path) -> None:
    out = tidal("--version", cwd=tmp_path)
    assert out.returncode == 0
    assert "tidal" in out.stdout


def test_demo_shows_state_changing(tmp_path: Path, env: dict[str, str]) -> None:
    out = tidal("demo", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "ana is into hiking" in out.stdout
    assert "(v7)" in out.stdout  # ana's profile went through 6 updates
    assert (tmp_path / "home" / "demo.db").exists()
    again = tidal("demo", "--keep", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "(v13)" in again.stdout  # persisted profiles continued


def test_worker_runs_ops_enqueued_elsewhere(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "tallyapp.py").write_text(APP_FILE)
    producer = textwrap.dedent(
        """
        import tallyapp
        t = tallyapp.Tally("t1", disable_update_task=True)
        for k in range(1, 11):
            t.run("bump", props={"k": k})
        t.run("bump", props={"k": 0, "fail": True})
        t.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", producer], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    queued = tidal("queue", "Tally", "t1", "--json", cwd=tmp_path, env=env)
    assert json.loads(queued.stdout)["pending"] == 11

    worked = tidal("worker", "tallyapp.py", "--burst", cwd=tmp_path, env=env)
    assert worked.returncode == 0, worked.stderr

    shown = tidal("state", "show", "Tally", "t1", "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert {k["key"]: k["value"] for k in state["keys"]} == {"n": "55"}

    after = tidal("queue", "Tally", "t1", "--json", cwd=tmp_path, env=env)
    report = json.loads(after.stdout)
    assert report["pending"] == 0
    assert len(report["failed"]) == 1
    assert "asked to fail" in report["failed"][0]["error"]
    assert tidal("queue", "Tally", "t1", cwd=tmp_path, env=env).returncode == 1  # failures -> exit 1

    listed = tidal("instances", "Tally", "--json", cwd=tmp_path, env=env)
    assert json.loads(listed.stdout) == [{"instance": "t1", "version": 11}]


def test_state_show_unknown_instance_fails_clearly(tmp_path: Path, env: dict[str, str]) -> None:
    out = tidal("state", "show", "Nope", "x", cwd=tmp_path, env=env)
    assert out.returncode == 3, out.stderr
    assert "no instance Nope/x" in out.stderr


def test_unknown_store_scheme_lists_known_ones(tmp_path: Path, env: dict[str, str]) -> None:
    out = tidal("instances", "X", "--store", "bogus://x", cwd=tmp_path, env=env)
    assert out.returncode == 2, out.stderr
    assert "memory://" in out.stderr and "sqlite://" in out.stderr
