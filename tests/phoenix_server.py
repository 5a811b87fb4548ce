"""A real OTLP receiver for the trace tests: Arize Phoenix (``arize-phoenix``
from PyPI, in the ``dev`` extra), started on free loopback ports and stopped
afterwards. Spans sent to ``otlp_url`` are read back over Phoenix's REST API.

A missing Phoenix fails the tests that need it: it is part of ``dev``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

import httpx
from ports import free_port

STARTUP_TIMEOUT = 120.0


class PhoenixServer:
    def __init__(
        self, port: int, process: subprocess.Popen[bytes], workdir: tempfile.TemporaryDirectory[str], log: IO[bytes]
    ) -> None:
        self.port = port
        self.log = log
        self.process = process
        self.workdir = workdir
        self.base_url = f"http://127.0.0.1:{port}"
        self.otlp_url = f"{self.base_url}/v1/traces"
        self.http = httpx.Client(base_url=self.base_url, timeout=30)

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span Phoenix stored for ``project`` (its REST API, all pages)."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            response = self.http.get(f"/v1/projects/{project}/spans", params=params)
            if response.status_code == 404:  # no span of the project arrived yet
                return []
            response.raise_for_status()
            body = response.json()
            out.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                return out

    def wait_for_spans(self, project: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The project's spans once at least ``count`` arrived (Phoenix
        ingests in the background); fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(project)
            if len(spans) >= count or time.monotonic() > deadline:
                assert len(spans) >= count, f"Phoenix has {len(spans)} spans of {project!r}, expected {count}: {spans}"
                return spans
            time.sleep(0.2)

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        self.workdir.cleanup()


def start_phoenix() -> PhoenixServer:
    """``python -m phoenix.server.main serve`` on free loopback ports, its
    data in a temporary folder; returns once it answers /healthz."""
    workdir = tempfile.TemporaryDirectory(prefix="tidal-phoenix-")
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": workdir.name,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    for name in [n for n in env if n.startswith(("OTEL_", "TIDAL_OTLP"))]:
        del env[name]  # Phoenix must not trace itself into the receiver under test
    log = open(os.path.join(workdir.name, "phoenix.log"), "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "phoenix.server.main", "serve"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    server = PhoenixServer(port, process, workdir, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            with open(os.path.join(workdir.name, "phoenix.log")) as fh:
                output = fh.read()[-5000:]
            server.stop()
            raise RuntimeError(f"Phoenix did not start (exit {process.poll()}):\n{output}")
        try:
            if server.http.get("/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
