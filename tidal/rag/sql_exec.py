"""Running checked SQL where it cannot write, for a bounded time and a
bounded number of rows.

The guard (:mod:`tidal.rag.sql_guard`) proves a query reads only; this
module makes the database refuse anything else as well:

* **SQLite** (a file): a connection of its own opened with
  ``mode=ro``, ``PRAGMA query_only=ON``, an authorizer that allows only
  ``SELECT``, reads of the allowed tables and functions not on
  :data:`SQLITE_DENIED_FUNCTIONS`, no attached databases, and values of at
  most :data:`MAX_VALUE_BYTES`. The in-memory database (``memory://``
  apps) has only the app's one connection: the same settings are put on it
  for the query and taken off afterwards. A progress handler stops the
  query once ``timeout_s`` has passed.
* **PostgreSQL**: a ``READ ONLY`` transaction with ``statement_timeout``
  (and ``lock_timeout``), rolled back afterwards; the query runs as a
  server-side cursor (``DECLARE ... CURSOR FOR``, which takes only a query)
  from which ``max_rows + 1`` rows are fetched, so a huge result never
  crosses the wire.

At most ``max_rows`` rows come back; ``truncated`` says there were more.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .sql_errors import SQLExecutionError, SQLTimeoutError

MAX_VALUE_BYTES = 10_000_000
"""SQLite's limit on one string or blob while a query runs: a value built
to exhaust memory fails instead."""

PROGRESS_STEPS = 1000
"""SQLite virtual-machine steps between two looks at the clock."""

SQLITE_DENIED_FUNCTIONS = frozenset(
    {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "randomblob", "zeroblob", "sqlite_offset"}
)
"""Functions the authorizer refuses even if a query got past the guard."""

_SQLITE_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE})

PG_TIMEOUT_STATES = frozenset({"57014"})
"""PostgreSQL's query_canceled (what statement_timeout raises)."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a query returned."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool
    """There were more than ``max_rows`` rows; the first ``max_rows`` are here."""
    elapsed_ms: float


def run_read_only(
    engine: sa.Engine,
    connect: Callable[[], Any],
    sql: str,
    *,
    tables: Collection[str],
    max_rows: int,
    timeout_s: float,
) -> Fetched:
    """Run checked ``sql`` on ``engine``'s database, read-only, for at most
    ``timeout_s`` seconds, returning at most ``max_rows`` rows.
    ``connect`` is the database's own way to a connection (the in-memory
    SQLite database has only one)."""
    dialect = engine.dialect.name
    started = time.perf_counter()
    if dialect == "sqlite":
        columns, rows = _sqlite(engine, connect, sql, set(tables), max_rows, timeout_s)
    elif dialect == "postgresql":
        columns, rows = _postgresql(connect, sql, max_rows, timeout_s)
    else:  # pragma: no cover - the guard refuses other dialects first
        raise SQLExecutionError(f"text-to-SQL cannot run queries on {dialect} databases", sql)
    truncated = len(rows) > max_rows
    return Fetched(columns, rows[:max_rows], truncated, (time.perf_counter() - started) * 1000)


# --------------------------------------------------------------------------- SQLite


def _sqlite(
    engine: sa.Engine, connect: Callable[[], Any], sql: str, tables: set[str], max_rows: int, timeout_s: float
) -> tuple[list[str], list[tuple[Any, ...]]]:
    path = engine.url.database
    if path and path != ":memory:":
        uri = "file:" + urllib.parse.quote(path) + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, check_same_thread=False)
        try:
            with _sqlite_guarded(conn, tables, timeout_s) as deadline:
                return _sqlite_fetch(conn, sql, max_rows, deadline)
        finally:
            conn.close()
    with connect() as sa_conn:
        raw = sa_conn.connection.driver_connection
        try:
            with _sqlite_guarded(raw, tables, timeout_s) as deadline:
                return _sqlite_fetch(raw, sql, max_rows, deadline)
        finally:
            sa_conn.rollback()


@contextmanager
def _sqlite_guarded(conn: sqlite3.Connection, tables: set[str], timeout_s: float) -> Iterator[list[float]]:
    """The connection made read-only, bounded and watched for the query;
    yields the deadline (a list, so that the clock starts at the query)."""
    deadline = [time.monotonic() + timeout_s]

    def authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        if action in _SQLITE_ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ and arg1 is not None and arg1.lower() in tables:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and arg2 is not None and arg2.lower() not in SQLITE_DENIED_FUNCTIONS:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    def progress() -> int:
        return 1 if time.monotonic() > deadline[0] else 0

    limits = {sqlite3.SQLITE_LIMIT_LENGTH: MAX_VALUE_BYTES, sqlite3.SQLITE_LIMIT_ATTACHED: 0}
    old_limits = {limit: conn.getlimit(limit) for limit in limits}
    conn.execute("PRAGMA query_only=ON")
    for limit, value in limits.items():
        conn.setlimit(limit, value)
    conn.set_authorizer(authorize)
    conn.set_progress_handler(progress, PROGRESS_STEPS)
    try:
        yield deadline
    finally:
        conn.set_progress_handler(None, 0)
        conn.set_authorizer(None)
        for limit, value in old_limits.items():
            conn.setlimit(limit, value)
        conn.execute("PRAGMA query_only=OFF")


def _sqlite_fetch(
    conn: sqlite3.Connection, sql: str, max_rows: int, deadline: list[float]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        rows = cursor.fetchmany(max_rows + 1)
        columns = [d[0] for d in cursor.description or ()]
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc) and time.monotonic() > deadline[0]:
            raise SQLTimeoutError("the query ran past its time limit and was stopped", sql) from exc
        raise SQLExecutionError(f"the database refused the query: {exc}", sql) from exc
    except sqlite3.DatabaseError as exc:
        raise SQLExecutionError(f"the database refused the query: {exc}", sql) from exc
    finally:
        cursor.close()
    return columns, rows


# --------------------------------------------------------------------------- PostgreSQL


def _postgresql(
    connect: Callable[[], Any], sql: str, max_rows: int, timeout_s: float
) -> tuple[list[str], list[tuple[Any, ...]]]:
    import psycopg

    timeout_ms = max(1, int(timeout_s * 1000))
    with connect() as sa_conn:
        driver = sa_conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        try:
            sa_conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            sa_conn.exec_driver_sql(f"SET LOCAL statement_timeout = {timeout_ms}")
            sa_conn.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout_ms}")
            with driver.cursor(name="tidal_text_to_sql") as cursor:
                cursor.execute(sql)
                rows = cursor.fetchmany(max_rows + 1)
                columns = [d.name for d in cursor.description or ()]
            return columns, [tuple(r) for r in rows]
        except (psycopg.Error, sa.exc.DBAPIError) as exc:
            orig = getattr(exc, "orig", exc)
            if getattr(orig, "sqlstate", None) in PG_TIMEOUT_STATES:
                raise SQLTimeoutError("the query ran past its time limit and was stopped", sql) from exc
            raise SQLExecutionError(f"the database refused the query: {str(orig).strip()}", sql) from exc
        finally:
            sa_conn.rollback()
