"""A runs-log writer that fails to store runs shows: on the dashboard's
JSON API (``/dashboard/api/runs-log``), as a banner on the runs page in a
real headless Chromium, and in ``tidal runs stats --url`` run as a real
subprocess against the server.

The failure is the database's own: a trigger in the server's SQLite file
refuses every runs row of one instance, so the server's writer stores the
run neither in full nor reduced, counts it in ``failed`` and keeps the
error. This module gets a `tidal serve` of its own (the ``dash`` fixture
is per module), so the refused run does not show in the other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tidal.client import Client

from .browser import screenshot
from .conftest import DashServer, load, wait_for

pytestmark = pytest.mark.slow

REFUSAL = "runs row refused by the test"


def runs_log(dash: DashServer) -> dict[str, Any]:
    response = httpx.get(dash.url + "/dashboard/api/runs-log", timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["runs_log"]
    return body


def runs_stats(dash: DashServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    env.pop("TIDAL_STORE", None)
    store = dash.app.store.url
    command = [sys.executable, "-m", "tidal.cli", "runs", "stats", "--app", "dash", "--store", store, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def refuse_runs_of(dash: DashServer, instance: str) -> None:
    """From now on the database refuses every runs row of ``instance``."""
    with dash.app.db.engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TRIGGER refuse_runs BEFORE INSERT ON runs WHEN NEW.instance = '{instance}' "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
            )
        )


def test_a_writer_that_cannot_store_runs_shows_in_the_api_the_page_and_the_cli(
    dash: DashServer, browser: WebDriver
) -> None:
    # Healthy first: the seeded runs were written, nothing failed.
    wait_for(lambda: runs_log(dash)["pending"] == 0, "the seeded runs to be written")
    healthy = runs_log(dash)
    assert healthy["healthy"] is True and healthy["warning"] is None
    assert healthy["written"] >= 10 and healthy["failed"] == 0 and healthy["alive"] is True
    load(browser, dash.page("/runs"))
    assert browser.find_elements(By.ID, "runs-log-warning") == []
    assert "healthy" in browser.find_element(By.ID, "runs-log-status").text
    out = runs_stats(dash, "--url", dash.url)
    assert out.returncode == 0, out.stderr
    assert f"runs log (server {dash.url}): healthy" in out.stdout

    refuse_runs_of(dash, "refused")
    with Client(dash.url) as client:
        served = client.component("Prefs").instance("refused").run("recommend", props={"event": "x"})
    assert served is not None  # serving goes on; only its runs row is refused
    wait_for(lambda: runs_log(dash)["failed"] >= 1, "the server's writer to give up on the refused row")

    broken = runs_log(dash)
    assert broken["pending"] == 0 and broken["alive"] is True
    assert broken["last_error"] is not None and REFUSAL in broken["last_error"]
    assert broken["warning"] is not None
    assert f"{broken['failed']} runs could not be stored" in broken["warning"] and REFUSAL in broken["warning"]
    assert dash.app.sql("SELECT count(*) FROM runs WHERE instance = 'refused'").scalar() == 0

    # The runs page shows a banner with the last error.
    load(browser, dash.page("/runs"))
    banner = browser.find_element(By.ID, "runs-log-warning")
    assert banner.is_displayed()
    assert "Runs log unhealthy" in banner.text and REFUSAL in banner.text
    assert browser.find_elements(By.ID, "runs-log-status") == []
    screenshot(browser, "runs-log-unhealthy")

    # The CLI, pointed at the server: a warning naming the error, exit 1.
    out = runs_stats(dash, "--url", dash.url)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "WARNING: runs log" in out.stderr and "could not be stored" in out.stderr and REFUSAL in out.stderr
    out = runs_stats(dash, "--url", dash.url, "--json")
    assert out.returncode == 1
    shown = json.loads(out.stdout)
    assert shown["runs_log"]["failed"] == broken["failed"] and REFUSAL in shown["runs_log"]["last_error"]
    assert shown["runs_log"]["warning"] is not None
    assert {row["component"] for row in shown["flows"]} >= {"Prefs"}


def test_runs_stats_names_a_server_it_cannot_reach(dash: DashServer) -> None:
    out = runs_stats(dash, "--url", "http://127.0.0.1:9")
    assert out.returncode == 1
    assert "cannot read the runs log's state from http://127.0.0.1:9/readyz" in out.stderr
