"""Shared fixtures: every test gets its own home folder, and ``app`` runs a
test once per embedded store."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    PostgresServer,
    RedisClusterServers,
    RedisServer,
    drop_database,
    fresh_database,
    start_postgres,
    start_redis,
    start_redis_cluster,
)

import tidal
from tidal.config import Settings

STORES = ["memory", "sqlite"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes ./.tidal, the environment, or another test's default app."""
    monkeypatch.setenv("TIDAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TIDAL_STORE", raising=False)
    monkeypatch.delenv("TIDAL_SECRET_KEY", raising=False)
    tidal.set_default_app(None)
    yield
    app = tidal.app._default
    if app is not None:
        app.close()
    tidal.set_default_app(None)


def make_app(kind: str, tmp_path: Path, name: str = "test", **settings: object) -> tidal.App:
    """An app on a fresh store of ``kind`` ("memory" or "sqlite") with short leases."""
    store = "memory://" if kind == "memory" else f"sqlite:///{tmp_path / (name + '.db')}"
    opts: dict[str, object] = {"lease_seconds": 2.0, "sweep_seconds": 0.2}
    opts.update(settings)
    return tidal.App(name, store=store, home=tmp_path / "home", settings=Settings(**opts))  # type: ignore[arg-type]


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(store_kind: str, tmp_path: Path) -> Iterator[tidal.App]:
    """A fresh App, once on ``memory://`` and once on ``sqlite:///``."""
    a = make_app(store_kind, tmp_path)
    yield a
    a.close()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (installed with apt if missing; never skipped)."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of an empty database of its own on ``pg_server``, dropped after the test."""
    url = fresh_database(pg_server, request.node.name)
    yield url
    drop_database(pg_server, url)


# --------------------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (installed with apt if missing; never skipped)."""
    server = start_redis()
    yield server
    server.stop()


def _namespace(request: pytest.FixtureRequest) -> str:
    return f"t_{re.sub(r'[^A-Za-z0-9_]+', '_', request.node.name)[:40]}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_url(redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A ``redis://`` store URL with a namespace of its own, so tests never see each other's keys;
    the test's keys are deleted afterwards."""
    import redis

    namespace = _namespace(request)
    yield f"{redis_server.url()}?namespace={namespace}"
    client = redis.Redis.from_url(redis_server.url())
    try:
        keys = list(client.scan_iter(match=f"*{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """One real Redis Cluster of three masters for the session (never skipped)."""
    cluster = start_redis_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers, request: pytest.FixtureRequest) -> Iterator[str]:
    """A ``redis://…?cluster=1`` store URL with a namespace of its own; the
    test's keys are deleted from every node afterwards."""
    namespace = _namespace(request)
    yield f"{redis_cluster.url()}?namespace={namespace}&cluster=1"
    client = redis_cluster.connect()
    try:
        for key in list(client.scan_iter(match=f"*{namespace}*", count=1000)):
            client.delete(key)
    finally:
        client.close()
