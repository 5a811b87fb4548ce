"""Fixtures of the relations tests: every test runs once on SQLite (the
default, the store's own file) and once on a real PostgreSQL server.

On PostgreSQL each test gets a schema of its own in one database of the
session (``search_path`` set in the URL) rather than a database of its own:
``CREATE DATABASE`` costs a quarter of a second, ``CREATE SCHEMA`` a few
milliseconds, and tables, the outbox and every reflection query are confined
to the schema all the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg import sql
from servers import PostgresServer, drop_database, fresh_database

import tidal
from tidal.config import Settings

BACKENDS = ["sqlite", "postgres"]

OpenApp = Callable[[], tidal.App]


@pytest.fixture(scope="session")
def pg_relations_db(pg_server: PostgresServer) -> Iterator[str]:
    """One database on the session's PostgreSQL server for these tests."""
    url = fresh_database(pg_server, "relations")
    yield url
    drop_database(pg_server, url)


@pytest.fixture
def pg_schema_url(pg_server: PostgresServer, pg_relations_db: str) -> Iterator[str]:
    """SQLAlchemy URL of an empty schema of its own, dropped after the test."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    database = pg_relations_db.rsplit("/", 1)[1]
    with pg_server.connect(database) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield f"{pg_relations_db}?options=-csearch_path%3D{schema}"
    with pg_server.connect(database) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_app(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[OpenApp]:
    """Opens an App on this test's relations database: the same SQLite file
    or PostgreSQL database every time, as a program started again would.
    Every App it opened is closed at the end of the test."""
    if backend == "sqlite":
        store, db = f"sqlite:///{tmp_path / 'app.db'}", None
    else:
        # PostgreSQL is only started for the tests that need it.
        store, db = "memory://", request.getfixturevalue("pg_schema_url")
    apps: list[tidal.App] = []

    def open_() -> tidal.App:
        app = tidal.App("rel", store=store, db=db, home=tmp_path / "home", settings=Settings())
        apps.append(app)
        return app

    yield open_
    for app in reversed(apps):
        app.close()


@pytest.fixture
def db_app(open_app: OpenApp) -> tidal.App:
    """An App whose relations live in SQLite (the store's file) or in PostgreSQL."""
    return open_app()
