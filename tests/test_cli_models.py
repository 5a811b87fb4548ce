"""``tidal models usage`` and the model columns of ``tidal runs tail``, as
real subprocesses: on the app's own database, and over ``--url`` from a
running ``tidal serve --api-key-required`` (the key from ``tidal keys
create``). Runs are real (``tidal run``); their model calls are written
with the numbers the assertions expect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from ports import free_port

import tidal
from tidal import admin
from tidal.relations.builtin import ModelCall

TIDAL = [sys.executable, "-m", "tidal.cli"]

APP_FILE = textwrap.dedent(
    """
    import tidal

    Chat = tidal.Component("Chat")

    @Chat.serve("ask")
    def ask(state, props):
        return "answer"
    """
)


def tidal_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TIDAL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def ok(*args: str, cwd: Path, env: dict[str, str]) -> Any:
    out = tidal_cli(*args, "--json", cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["TIDAL_HOME"] = str(tmp_path / "home")
    e["TIDAL_STORE"] = f"sqlite:///{tmp_path / 'app.db'}"
    e["TIDAL_SECRET_KEY"] = "cli-test-secret-key-0123456789"
    e["COLUMNS"] = "250"
    e.pop("TIDAL_API_KEY", None)
    return e


@pytest.fixture
def project(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """The app file in tmp_path, a run of Chat "ask" for u1 and u2, and
    model calls on them (one of u1's two days ago); the run ids by instance."""
    (tmp_path / "chatapp.py").write_text(APP_FILE)
    for instance in ("u1", "u2"):
        done = tidal_cli("run", "chatapp.py", "Chat", "ask", "--instance", instance, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
    app = tidal.App("default", store=env["TIDAL_STORE"], home=tmp_path / "home")
    try:
        runs = {r.instance: r.id for r in admin.runs(app, component="Chat")}
        now = datetime.now(UTC)

        def call(instance: str, model: str, cost: float, **fields: Any) -> ModelCall:
            fields.setdefault("started_at", now)
            return ModelCall(run_id=runs[instance], component="Chat", instance=instance, flow="ask", model=model,
                             endpoint="https://api.example.com/v1", cost=cost, prompt_tokens=100,
                             completion_tokens=20, latency_ms=250.0, **fields)  # fmt: skip

        app.insert_many(
            [
                call("u1", "gpt-4o", 1.5),
                call("u1", "gpt-4o", 0.5, cache_hit="semantic", similarity=0.95),
                call("u2", "gpt-4o-mini", 0.002),
                call("u1", "gpt-4o", 7.0, started_at=now - timedelta(days=2)),
            ]
        )
    finally:
        app.close()
    return runs


def test_models_usage_per_model_flow_and_instance_day(tmp_path: Path, env: dict[str, str],
                                                      project: dict[str, str]) -> None:  # fmt: skip
    models = {m["model"]: m for m in ok("models", "usage", cwd=tmp_path, env=env)}
    assert set(models) == {"gpt-4o", "gpt-4o-mini"}  # the two-day-old call is outside the default 1d
    gpt = models["gpt-4o"]
    assert (gpt["calls"], gpt["cost"], gpt["tokens"], gpt["cache_hit_rate"]) == (2, 2.0, 240, 0.5)
    wider = {m["model"]: m for m in ok("models", "usage", "--window", "3d", cwd=tmp_path, env=env)}
    assert wider["gpt-4o"]["calls"] == 3 and wider["gpt-4o"]["cost"] == 9.0
    flows = ok("models", "usage", "--by", "flow", cwd=tmp_path, env=env)
    assert [(f["component"], f["flow"], f["calls"]) for f in flows] == [("Chat", "ask", 3)]
    assert flows[0]["cost"] == pytest.approx(2.002)
    days = ok("models", "usage", "--by", "instance-day", "--window", "7d", cwd=tmp_path, env=env)
    today, before = datetime.now(UTC).date(), (datetime.now(UTC) - timedelta(days=2)).date()
    assert [(d["day"], d["instance"], d["cost"]) for d in days] == [
        (str(today), "u1", 2.0),
        (str(today), "u2", 0.002),
        (str(before), "u1", 7.0),
    ]
    assert ok("models", "usage", "--component", "Other", cwd=tmp_path, env=env) == []

    human = tidal_cli("models", "usage", cwd=tmp_path, env=env)
    assert human.returncode == 0, human.stderr
    assert "gpt-4o" in human.stdout and "$2.00" in human.stdout and "$0.0020" in human.stdout
    assert "3 calls, $2.00 in the last 1d" in human.stdout
    bad = tidal_cli("models", "usage", "--window", "soon", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr


def test_runs_tail_shows_each_runs_model_cost(tmp_path: Path, env: dict[str, str], project: dict[str, str]) -> None:
    rows = {r["instance"]: r for r in ok("runs", "tail", cwd=tmp_path, env=env)}
    assert rows["u1"]["models"] == {"run_id": project["u1"], "calls": 3, "tokens": 360, "cost": 9.0}
    assert rows["u2"]["models"]["cost"] == 0.002
    human = tidal_cli("runs", "tail", cwd=tmp_path, env=env)
    assert human.returncode == 0, human.stderr
    assert "model cost" in human.stdout and "$9.00" in human.stdout


@pytest.fixture
def served(tmp_path: Path, env: dict[str, str], project: dict[str, str]) -> Iterator[tuple[str, str]]:
    """`tidal serve --api-key-required` on the project: its URL and a read key."""
    key = tidal_cli("keys", "create", "--name", "reader", cwd=tmp_path, env=env).stdout.strip()
    port = free_port()
    args = [*TIDAL, "serve", "chatapp.py", "--port", str(port), "--log-level", "warning", "--api-key-required"]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tidal serve did not start:\n{(tmp_path / 'serve.log').read_text()}")
            time.sleep(0.1)
        yield url, key
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


@pytest.mark.slow
def test_models_usage_over_url(tmp_path: Path, env: dict[str, str], served: tuple[str, str]) -> None:
    url, key = served
    refused = tidal_cli("models", "usage", "--url", url, cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "401" in refused.stderr and "TIDAL_API_KEY" in refused.stderr
    remote = ok("models", "usage", "--url", url, "--api-key", key, cwd=tmp_path, env=env)
    local = ok("models", "usage", cwd=tmp_path, env=env)
    assert {m["model"]: (m["calls"], m["cost"]) for m in remote} == {m["model"]: (m["calls"], m["cost"]) for m in local}
    env_key = {**env, "TIDAL_API_KEY": key}
    flows = ok("models", "usage", "--url", url, "--by", "flow", "--component", "Chat", cwd=tmp_path, env=env_key)
    assert [(f["flow"], f["calls"]) for f in flows] == [("ask", 3)]
    days = ok("models", "usage", "--url", url, "--by", "instance-day", cwd=tmp_path, env=env_key)
    assert [(d["instance"], d["cost"]) for d in days] == [("u1", 2.0), ("u2", 0.002)]
