"""Fixtures of the dashboard tests: a real `tidal serve` process on a free
loopback port with seeded state, runs, feedback and failed update ops; SQL
on its SQLite file and an App in the test process on the same store (to
check what the dashboard shows without going through ``tidal.admin``, which
the dashboard's routes call); one headless Chromium for the session."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.support.ui import WebDriverWait
from servers import free_port

import tidal
from tidal.client import Client

from .browser import console_errors, start_browser

TARGET = Path(__file__).with_name("dash_target.py")


@dataclass
class DashServer:
    """A running `tidal serve` and what the tests need to drive and check it."""

    url: str
    app: tidal.App
    """An App on the server's store, in the test process (its codec decodes stored values)."""
    db: Path
    """The server's SQLite file: its store's tables and its relations (``runs``, ``feedback``)."""
    fail_file: Path
    """While it exists, Docs' index update fails on props with ``fail``."""
    keys: dict[str, str] = field(default_factory=dict)
    """API keys by name: ``admin`` (write), ``reader`` (read-only); empty without auth."""

    def page(self, fragment: str = "/") -> str:
        return f"{self.url}/dashboard/#{fragment}"

    # What the store holds, read with SQL on the file: the oracle the tests
    # compare the dashboard with (the schema is in tidal/stores/sqlite/schema.py).

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.db, timeout=10)) as conn:
            conn.execute("PRAGMA query_only = 1")
            return conn.execute(query, params).fetchall()

    def failed_ops(self, component: str) -> dict[int, str]:
        """Failed ops of ``component``: op id -> instance."""
        rows = self.sql("SELECT id, instance FROM tidal_ops WHERE component = ? AND status = 1", component)
        return dict(rows)

    def version(self, component: str, instance: str) -> int:
        query = "SELECT version FROM tidal_instances WHERE component = ? AND instance = ?"
        ((version,),) = self.sql(query, component, instance)
        return int(version)

    def keys_of(self, component: str, instance: str) -> dict[str, tuple[int, bytes]]:
        """The live keys of an instance: key -> (version written at, stored bytes)."""
        rows = self.sql(
            "SELECT key, version, value FROM tidal_state WHERE component = ? AND instance = ? AND value IS NOT NULL",
            component,
            instance,
        )
        return {key: (version, value) for key, version, value in rows}

    def value(self, component: str, instance: str, key: str) -> Any:
        """A state key's current value, read with SQL and decoded by the codec."""
        raw = self.keys_of(component, instance)[key][1]
        return self.app.decoder(component, instance)(raw, key)


def _cli(env: dict[str, str], store: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tidal.cli", *args, "--app", "dash", "--store", store],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def seed(url: str, key: str | None) -> None:
    """Runs on two Prefs instances (feedback on two), an indexed doc, two
    index ops that fail (doc-a's and doc-b's), a note that fires a trigger."""
    with Client(url, api_key=key) as client:
        prefs = client.component("Prefs")
        served: list[str] = []
        for name, events in (("u1", ["hiking", "climbing", "camping"]), ("u2", ["reading", "chess"])):
            inst = prefs.instance(name)
            for event in events:
                inst.run("recommend", props={"event": event}, flush_update=True)
                assert inst.last_run_id is not None
                served.append(inst.last_run_id)
        client.feedback(served[0], score=1.0, comment="spot on")
        client.feedback(served[1], score=0.0)
        docs = client.component("Docs")
        docs.instance("doc-a").run("add", props={"title": "alpha"}, flush_update=True)
        docs.instance("doc-a").run("add", props={"title": "beta", "fail": True})
        docs.instance("doc-b").run("add", props={"title": "gamma", "fail": True})
        client.insert("note", {"text": "hello"})


def wait_for(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(check) or not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _start(tmp: Path, *, auth: bool) -> Iterator[DashServer]:
    home = tmp / "home"
    fail_file = tmp / "index-offline"
    fail_file.touch()
    env = {**os.environ, "TIDAL_HOME": str(home), "DASH_FAIL_FILE": str(fail_file)}
    env.pop("TIDAL_STORE", None)
    store = f"sqlite:///{tmp / 'dash.db'}"
    keys: dict[str, str] = {}
    if auth:
        keys["admin"] = _cli(env, store, "keys", "create", "--name", "admin", "--write")
        keys["reader"] = _cli(env, store, "keys", "create", "--name", "reader")
    port = free_port()
    log_path = tmp / "serve.log"
    log = log_path.open("w")
    args = [sys.executable, "-m", "tidal.cli", "serve", str(TARGET), "--app", "dash", "--store", store]
    args += ["--port", str(port), "--log-level", "warning", *(["--api-key-required"] if auth else [])]
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    app: tidal.App | None = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tidal serve did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        seed(url, keys.get("admin"))
        app = tidal.App("dash", store=store, home=home)
        server = DashServer(url, app, tmp / "dash.db", fail_file, keys)
        wait_for(lambda: len(server.failed_ops("Docs")) == 2, "the two failed index ops")
        yield server
    finally:
        if app is not None:
            app.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashServer]:
    """`tidal serve` without auth (loopback), seeded."""
    yield from _start(tmp_path_factory.mktemp("dash"), auth=False)


@pytest.fixture(scope="module")
def dash_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashServer]:
    """`tidal serve --api-key-required`, seeded; keys ``admin`` and ``reader``."""
    yield from _start(tmp_path_factory.mktemp("dash-auth"), auth=True)


@pytest.fixture(scope="session")
def chromium() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session (installed with apt if missing; never skipped)."""
    chrome = start_browser()
    yield chrome
    chrome.quit()


@pytest.fixture
def browser(chromium: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The session's Chromium, starting from a blank tab with no key stored;
    the test fails on any console error it leaves unclaimed."""
    chromium.get("about:blank")
    chromium.execute_script("try { sessionStorage.clear(); } catch (e) {}")
    chromium.get_log("browser")  # drop what earlier tests left
    yield chromium
    errors = console_errors(chromium)
    assert not errors, f"browser console errors: {errors}"


def load(chrome: webdriver.Chrome, url: str, timeout: float = 20.0) -> None:
    """Open a dashboard URL (``…/dashboard/#/fragment``) afresh and wait until that page has rendered."""
    chrome.get("about:blank")
    chrome.get(url)
    fragment = url.split("#", 1)[1] if "#" in url else "/"
    wait_until_rendered(chrome, "#" + fragment, timeout)


def wait_until_rendered(chrome: webdriver.Chrome, fragment: str, timeout: float = 20.0) -> None:
    def rendered(driver: webdriver.Chrome) -> bool:
        main = driver.find_element("id", "main")
        return main.get_attribute("data-loaded") == fragment

    try:
        WebDriverWait(chrome, timeout).until(rendered)
    except Exception as exc:
        text = chrome.find_element("id", "main").text
        raise AssertionError(f"page {fragment} did not render; it shows: {text[:500]!r}") from exc
