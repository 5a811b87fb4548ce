"""One app per target: when the file `tidal serve` / `tidal run` / `tidal
worker` load defines its own ``tidal.App``, the command uses that App, not a
second one on the same store (runs would be logged by one and feedback
looked up in the other)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ports import free_port

from tidal.client import Client

pytestmark = pytest.mark.slow

TIDAL = [sys.executable, "-m", "tidal.cli"]
REPO = Path(__file__).resolve().parents[1]

OWN_APP = textwrap.dedent(
    """
    import tidal

    app = tidal.App("own")
    Notes = app.component("Notes")

    @Notes.init_state
    def setup():
        return {"n": 0}

    @Notes.serve("add")
    def add(state, props):
        return state["n"] + props["k"]

    @Notes.update("add")
    def bump(state, props):
        return {"n": state["n"] + props["k"]}
    """
)

TWO_APPS = textwrap.dedent(
    """
    import tidal

    first = tidal.App("two")
    second = tidal.App("two")
    A = first.component("A")
    B = second.component("B")

    @A.serve("ping")
    def ping_a(state, props):
        return "a"

    @B.serve("ping")
    def ping_b(state, props):
        return "b"
    """
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["TIDAL_HOME"] = str(tmp_path / "home")
    e["TIDAL_SECRET_KEY"] = "cli-serve-test-secret-key-0123456789"
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [e.get("PYTHONPATH")])])
    e.pop("TIDAL_STORE", None)
    return e


def tidal(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TIDAL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def own_server(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """`tidal serve own.py --app own` as a real process on a free loopback port."""
    (tmp_path / "own.py").write_text(OWN_APP)
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [*TIDAL, "serve", "own.py", "--app", "own", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"tidal serve did not start:\n{(tmp_path / 'serve.log').read_text()}")
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()
        raise
    finally:
        log.close()


def test_feedback_right_after_a_run_on_a_file_with_its_own_app(own_server: str) -> None:
    with Client(own_server) as client:
        notes = client.component("Notes").instance("n1")
        for k in range(20):
            assert notes.run("add", props={"k": k}) is not None
            run_id = notes.last_run_id
            assert run_id
            stored = client.feedback(run_id, score=1, comment=f"run {k}")  # at once: no wait, no retry
            assert stored["run_id"] == run_id and stored["instance"] == "n1"


def test_run_picks_the_app_named_in_the_target(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "two.py").write_text(TWO_APPS)
    ambiguous = tidal("run", "two.py", "A", "ping", "--instance", "x", "--app", "two", cwd=tmp_path, env=env)
    assert ambiguous.returncode == 2, ambiguous.stderr
    assert "2 apps on one store" in ambiguous.stderr and "TARGET:attr" in ambiguous.stderr
    picked = tidal("run", "two.py:second", "B", "ping", "--instance", "x", "--app", "two", cwd=tmp_path, env=env)
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout.strip() == "b"
    other = tidal("run", "two.py:first", "B", "ping", "--instance", "x", "--app", "two", cwd=tmp_path, env=env)
    assert other.returncode == 3 and "known: A" in other.stderr
    not_an_app = tidal("run", "two.py:A", "A", "ping", "--instance", "x", cwd=tmp_path, env=env)
    assert not_an_app.returncode == 2 and "is not a tidal.App" in not_an_app.stderr


def test_worker_names_the_app_the_file_defines(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "own.py").write_text(OWN_APP)
    wrong = tidal("worker", "own.py", "--burst", cwd=tmp_path, env=env)  # --app default: another store
    assert wrong.returncode == 1
    assert "defines no components used by app 'default'" in wrong.stderr and "app 'own'" in wrong.stderr
    right = tidal("worker", "own.py", "--burst", "--app", "own", cwd=tmp_path, env=env)
    assert right.returncode == 0, right.stderr
    assert "Notes" in right.stderr
