"""`tidal serve` as a real process on a free loopback port, driven by the
Python client (sync and async), streams included."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import free_port

import tidal
from tidal.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RequestValidationError,
    ServerError,
)

from .sample import Purchase

TARGET = Path(__file__).with_name("serve_target.py")
pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A `tidal serve --api-key-required` process; yields (url, write key, key scoped to instance A)."""
    env = {**os.environ, "TIDAL_HOME": str(tmp_path / "home")}
    store = f"sqlite:///{tmp_path / 'e2e.db'}"

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "tidal.cli", *args, "--app", "e2e", "--store", store],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    admin = cli("keys", "create", "--name", "admin", "--write")
    user_a = cli("keys", "create", "--name", "a", "--component", "Prefs", "--instance", "A", "--write")
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidal.cli",
            "serve",
            str(TARGET),
            "--app",
            "e2e",
            "--store",
            store,
            "--port",
            str(port),
            "--api-key-required",
            "--max-body-bytes",
            "4096",
            "--log-level",
            "warning",
        ],
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
    yield url, admin, user_a
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()
        raise
    finally:
        log.close()


def test_sync_client_against_a_real_server(server: tuple[str, str, str]) -> None:
    url, admin, user_a = server
    with Client(url, api_key=admin) as client:
        assert {c["name"] for c in client.components()} == {"Prefs", "Echo"}
        prefs = client.component("Prefs").instance("u1")
        result = prefs.run("recommend", props={"event": "hiking"}, flush_update=True)
        assert result == {"event": "hiking", "seen": 0, "limit": 3}
        assert prefs.last_version == 2 and prefs.last_run_id
        assert prefs.read_state("events") == ["hiking"]
        assert prefs.state()["keys"]["blob"]["json_value"] is False
        assert list(client.component("Echo").instance("e").gen("count", props={"n": 4})) == [0, 1, 2, 3]
        feedback = client.feedback(prefs.last_run_id, score=1, comment="good")
        assert feedback["instance"] == "u1"
        stored = client.insert("purchase", {"user": "u1", "item": "boots", "price": 90})
        assert client.query("purchase", {"user": "u1"})[0]["id"] == stored["id"]
        assert client.component("Prefs").instances() == ["u1"]
        assert client.freshness()[0]["component"] == "Prefs"
        assert client.ready()

        with pytest.raises(NotFoundError) as missing:
            prefs.run("nope")
        assert missing.value.known == ["recommend"]
        with pytest.raises(NotFoundError):
            client.component("Prefs").instance("ghost").state()
        with pytest.raises(RequestValidationError) as invalid:
            prefs.run("recommend", props={"event": "x", "limit": 0})
        assert invalid.value.fields == ["props.limit"]
        with pytest.raises(RequestValidationError) as bad_record:
            client.insert("purchase", {"user": "u1", "item": "x", "price": -5})
        assert bad_record.value.fields == ["price"]
        with pytest.raises(PayloadTooLargeError):
            prefs.run("recommend", props={"event": "x", "pad": "y" * 10_000})
        with pytest.raises(ServerError, match="the op broke"):
            client.component("Echo").instance("e").run("boom")

    with Client(url, api_key=user_a) as scoped:
        assert scoped.component("Prefs").instance("A").run("recommend", props={"event": "x"})["event"] == "x"
        with pytest.raises(PermissionDeniedError):
            scoped.component("Prefs").instance("B").run("recommend", props={"event": "x"})
    with Client(url) as anonymous, pytest.raises(AuthenticationError):
        anonymous.components()
    with Client(url, api_key="tidal_0000_nope") as wrong, pytest.raises(AuthenticationError):
        wrong.components()


def test_chunked_upload_over_the_limit_is_refused(server: tuple[str, str, str]) -> None:
    url, admin, _ = server

    def chunks() -> Iterator[bytes]:
        yield b'{"user": "u1", "item": "x", "price": 1, "pad": "'
        for _ in range(10):
            yield b"z" * 1024
        yield b'"}'

    headers = {"Authorization": f"Bearer {admin}", "content-type": "application/json"}
    answer = httpx.post(url + "/relations/purchase", content=chunks(), headers=headers)
    assert answer.status_code == 413
    assert httpx.post(url + "/relations/purchase/query", json={}, headers=headers).json()["records"] == []


def test_async_client_against_a_real_server(server: tuple[str, str, str]) -> None:
    url, admin, _ = server

    async def scenario() -> None:
        async with AsyncClient(url, api_key=admin) as client:
            echo = client.component("Echo").instance("e")
            assert await echo.run("aecho", props={"k": 1}) == {"async": True, "k": 1}
            assert [item async for item in echo.agen("acount", props={"n": 3})] == [{"i": 0}, {"i": 1}, {"i": 2}]
            assert echo.last_run_id and echo.last_version == 1
            assert [item async for item in echo.agen("count", props={"n": 2})] == [0, 1]
            prefs = client.component("Prefs").instance("u2")
            await prefs.run("recommend", props={"event": "a"}, flush_update=True)
            assert await prefs.read_state("events") == ["a"]
            assert await prefs.get_version() == 2
            await client.insert_many("purchase", [{"user": "u2", "item": "a", "price": 1}])
            await client.insert(Purchase, Purchase(user="u2", item="b", price=2))
            assert [r["item"] for r in await client.query(Purchase, {"user": "u2"})] == ["a", "b"]
            with pytest.raises(NotFoundError):
                await client.component("Nope").instance("x").run("f")

    asyncio.run(scenario())
    assert tidal.AsyncClient is AsyncClient and tidal.Client is Client
