"""The stand-in model server for tests that talk to a model.

``standin`` (function scope) is one ``tidal models serve --stand-in --port 0``
subprocess for the whole session (``standin_server``), with its faults,
script and request log cleared before and after each test::

    def test_judge(standin):
        standin.script([{"match": "score", "answer": "7"}])
        client = standin.client()                    # openai.OpenAI on standin.base_url, no retries
        standin.faults([{"kind": "429", "times": 1}])
        ...
        assert standin.requests()[-1]["body"]["seed"] == 3

``running_standin(**kwargs)`` serves a :class:`StandIn` of its own on a thread
(in process) for tests that need other settings: an API key, a context window.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import openai
import pytest

from tidal.models.http import build_app, serving
from tidal.models.standin import StandIn

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0
URL_LINE = re.compile(r"^serving \S+ on (http://\S+/v1)$")


class StandInServer:
    """A running stand-in server and the helpers that steer it over HTTP."""

    def __init__(self, base_url: str, process: subprocess.Popen[str] | None = None, log: IO[str] | None = None) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log  # the subprocess's stderr
        self.http = httpx.Client(base_url=base_url.removesuffix("/v1") + "/_stand-in", timeout=10)
        self.clients: list[openai.OpenAI] = []

    def client(self, **options: Any) -> openai.OpenAI:
        """An ``openai.OpenAI`` on this server: api key "x", no retries unless
        given; closed when the test ends (:meth:`close_clients`)."""
        options = {"api_key": "x", "max_retries": 0, **options}
        client = openai.OpenAI(base_url=self.base_url, **options)
        self.clients.append(client)
        return client

    def close_clients(self) -> None:
        while self.clients:
            self.clients.pop().close()

    def faults(self, faults: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Replace the faults with ``faults`` (none given: leave them); returns them with their hits."""
        response = self.http.get("/faults") if faults is None else self.http.post("/faults", json=faults)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def script(self, rules: list[dict[str, Any]]) -> None:
        """Replace the script with ``rules``."""
        self.http.post("/script", json=rules).raise_for_status()

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The requests received (oldest first): method, path, headers without auth, body."""
        params = {"limit": limit} if limit else None
        response = self.http.get("/requests", params=params)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def clear(self) -> None:
        """No faults, no script, an empty request log."""
        for route in ("/faults", "/script", "/requests"):
            self.http.delete(route).raise_for_status()

    def stop(self) -> None:
        self.close_clients()
        self.http.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if self.log is not None:
            self.log.close()


def start_standin(*options: str) -> StandInServer:
    """``python -m tidal models serve --stand-in --port 0 OPTIONS`` as a child
    process; returns once it printed its URL. The caller stops it (it also
    stops at exit)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - the server's stderr, read on failure
    process = subprocess.Popen(
        [sys.executable, "-m", "tidal", "models", "serve", "--stand-in", "--port", "0", *options],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline() if process.stdout else ""))
    reader.start()
    reader.join(STARTUP_TIMEOUT)
    match = URL_LINE.match(lines[0].strip()) if lines else None
    if match is None:
        process.kill()
        process.wait()
        log.seek(0)
        output = log.read()
        log.close()
        raise RuntimeError(f"the stand-in server did not print its URL (got {lines!r}):\n{output}")
    server = StandInServer(match.group(1), process, log)
    atexit.register(server.stop)
    return server


@contextlib.contextmanager
def running_standin(*, api_key: str | None = None, **settings: Any) -> Iterator[StandInServer]:
    """A stand-in of its own, served on a thread of this process."""
    with serving(build_app(StandIn(**settings), api_key=api_key)) as url:
        server = StandInServer(url)
        if api_key is not None:
            server.http.headers["authorization"] = f"Bearer {api_key}"
        try:
            yield server
        finally:
            server.close_clients()
            server.http.close()


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StandInServer]:
    """The session's stand-in subprocess; tests use ``standin``."""
    server = start_standin()
    yield server
    server.stop()


@pytest.fixture
def standin(standin_server: StandInServer) -> Iterator[StandInServer]:
    """The stand-in server, with no faults, no script and an empty request log."""
    standin_server.clear()
    yield standin_server
    standin_server.close_clients()
    standin_server.clear()
