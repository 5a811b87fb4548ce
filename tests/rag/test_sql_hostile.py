"""The hostile battery: model outputs that try to write, escape the allowed
tables, or exhaust the database, fed through the stand-in model into
``TextToSQL.ask`` on SQLite and on PostgreSQL. Each one is refused with a
clear error (or stopped by the time or row limit), and every table's
contents, and the list of tables, are unchanged afterwards."""

from __future__ import annotations

import time
from typing import Any

import pytest

import tidal
from tidal import models, rag
from tidal.rag.sql_exec import run_read_only

from .shop import TABLES, checksum, seed

REFUSED, TIMEOUT, TRUNCATED = "refused", "timeout", "truncated"
MAX_ROWS = 50
TIMEOUT_S = 0.5

HOSTILE: list[tuple[str, str, str]] = [
    # writes
    ("insert", "INSERT INTO sale (id, product_id, store_id, units, sold_at) VALUES ('x', 'p1', 's1', 9, '2020-01-01')", REFUSED),  # noqa: E501
    ("update", "UPDATE sale SET units = 0", REFUSED),
    ("delete", "DELETE FROM sale", REFUSED),
    ("replace", "REPLACE INTO product (id, name, price) VALUES ('p1', 'Evil', 0)", REFUSED),
    ("insert-or-replace", "INSERT OR REPLACE INTO product (id, name, price) VALUES ('p1', 'Evil', 0)", REFUSED),
    ("truncate", "TRUNCATE sale", REFUSED),
    ("fenced-delete", "Sure! Here it is:\n```sql\nDELETE FROM sale WHERE 1 = 1\n```", REFUSED),
    # schema changes
    ("drop", "DROP TABLE sale", REFUSED),
    ("create", "CREATE TABLE evil (x INTEGER)", REFUSED),
    ("create-as", "CREATE TABLE evil AS SELECT * FROM sale", REFUSED),
    ("alter", "ALTER TABLE sale ADD COLUMN evil INTEGER", REFUSED),
    ("grant", "GRANT ALL ON sale TO PUBLIC", REFUSED),
    ("select-into", "SELECT * INTO evil FROM sale", REFUSED),
    # the database around the tables
    ("attach", "ATTACH DATABASE '/tmp/tidal-evil.db' AS evil", REFUSED),
    ("detach", "DETACH DATABASE main", REFUSED),
    ("pragma-writable-schema", "PRAGMA writable_schema = ON", REFUSED),
    ("pragma-query-only", "PRAGMA query_only = OFF", REFUSED),
    ("vacuum-into", "VACUUM INTO '/tmp/tidal-evil.db'", REFUSED),
    ("copy", "COPY sale TO '/tmp/tidal-evil.csv'", REFUSED),
    ("set", "SET statement_timeout = 0", REFUSED),
    ("set-read-write", "SET TRANSACTION READ WRITE", REFUSED),
    ("explain-analyze", "EXPLAIN ANALYZE DELETE FROM sale", REFUSED),
    ("do-block", "DO $$ BEGIN DELETE FROM sale; END $$", REFUSED),
    ("lock", "LOCK TABLE sale", REFUSED),
    ("prepare", "PREPARE evil AS DELETE FROM sale", REFUSED),
    ("for-update", "SELECT * FROM sale FOR UPDATE", REFUSED),
    # functions that write, read files, load code or sleep
    ("load-extension", "SELECT load_extension('/tmp/evil.so')", REFUSED),
    ("writefile", "SELECT writefile('/tmp/tidal-evil.txt', 'x')", REFUSED),
    ("pg-sleep", "SELECT pg_sleep(10)", REFUSED),
    ("nextval", "SELECT nextval('evil_seq')", REFUSED),
    ("set-config", "SELECT set_config('default_transaction_read_only', 'off', false)", REFUSED),
    ("pg-read-file", "SELECT pg_read_file('/etc/passwd')", REFUSED),
    ("lo-import", "SELECT lo_import('/etc/passwd')", REFUSED),
    ("query-to-xml", "SELECT query_to_xml('DELETE FROM sale RETURNING *', true, true, '')", REFUSED),
    ("randomblob-loop", "SELECT count(*) FROM sale a, sale b WHERE length(randomblob(1000000)) > 0", REFUSED),
    ("zeroblob", "SELECT zeroblob(1000000000)", REFUSED),
    ("printf-bomb", "SELECT printf('%.*c', 1000000000, 'x')", REFUSED),
    ("regclass", "SELECT 'pg_authid'::regclass", REFUSED),
    # stacked statements and comment tricks
    ("stacked-drop", "SELECT 1; DROP TABLE sale", REFUSED),
    ("stacked-delete", "SELECT * FROM sale; DELETE FROM sale", REFUSED),
    ("commit-then-drop", "COMMIT; DROP TABLE sale", REFUSED),
    ("begin-delete-commit", "BEGIN; DELETE FROM sale; COMMIT", REFUSED),
    ("line-comment", "SELECT 1 -- harmless\n; DELETE FROM sale", REFUSED),
    ("block-comment", "SELECT 1 /* harmless */ ; DELETE FROM sale /* also */", REFUSED),
    ("leading-comment", "/* SELECT */ DELETE FROM sale", REFUSED),
    # CTEs hiding writes
    ("cte-delete", "WITH gone AS (DELETE FROM sale RETURNING *) SELECT count(*) FROM gone", REFUSED),
    ("cte-update", "WITH x AS (UPDATE product SET price = 0 RETURNING id) SELECT * FROM x", REFUSED),
    ("cte-insert", "WITH x AS (INSERT INTO store (id, city) VALUES ('evil', 'x') RETURNING id) SELECT * FROM x", REFUSED),  # noqa: E501
    # tables outside the list
    ("other-table", "SELECT * FROM secret", REFUSED),
    ("union-other-table", "SELECT name FROM product UNION SELECT token FROM secret", REFUSED),
    ("subquery-other-table", "SELECT * FROM sale WHERE product_id IN (SELECT token FROM secret)", REFUSED),
    ("cte-out-of-scope", "SELECT * FROM (WITH secret AS (SELECT 1 AS token) SELECT * FROM secret) AS t, secret", REFUSED),  # noqa: E501
    ("cte-forward-reference", "WITH a AS (SELECT * FROM secret), secret AS (SELECT 1 AS token) SELECT * FROM a", REFUSED),  # noqa: E501
    ("runs-log", "SELECT * FROM runs", REFUSED),
    ("sqlite-master", "SELECT sql FROM sqlite_master", REFUSED),
    ("schema-qualified", "SELECT sql FROM main.sqlite_master", REFUSED),
    ("schema-qualified-allowed", "SELECT * FROM main.sale", REFUSED),
    ("pg-catalog", "SELECT * FROM pg_catalog.pg_user", REFUSED),
    ("pg-shadow", "SELECT usename, passwd FROM pg_shadow", REFUSED),
    ("information-schema", "SELECT * FROM information_schema.tables", REFUSED),
    ("table-function", "SELECT * FROM pragma_table_info('sale')", REFUSED),
    ("homoglyph", "SELECT * FROM \u0455ale", REFUSED),  # Cyrillic dze, not s
    ("homoglyph-quoted", 'SELECT * FROM "s\u0430le"', REFUSED),  # Cyrillic a
    ("parameter", "SELECT * FROM sale WHERE id = :id", REFUSED),
    ("prose", "I'm sorry, I cannot answer that.", REFUSED),
    # exhaustion: stopped by the time limit or the row limit
    ("recursive-cte-bomb", "WITH RECURSIVE bomb(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM bomb) SELECT count(*) FROM bomb", TIMEOUT),  # noqa: E501
    ("cross-join-count", "SELECT count(*) FROM sale a, sale b, sale c, sale d, sale e", TIMEOUT),
    ("cross-join-rows", "SELECT a.id, b.id FROM sale a, sale b", TRUNCATED),
]  # fmt: skip


@pytest.fixture
def asker(db_app: tidal.App, standin: Any) -> Any:
    """A TextToSQL over the shop (not ``secret``), warmed up by one answer so
    that the runs log's tables exist before the first checksum."""
    seed(db_app)
    llm = models.connect(standin.base_url + "#stand-in", app=db_app, max_retries=0)
    sql = rag.TextToSQL(db_app, llm, TABLES, max_rows=MAX_ROWS, timeout_s=TIMEOUT_S)
    standin.script([{"match": "warm up", "answer": "SELECT count(*) AS n FROM sale"}])
    assert sql.ask("warm up").rows.scalar() == 60
    yield sql
    sql.close()
    llm.close()


def test_the_battery_is_big_enough() -> None:
    assert len(HOSTILE) >= 30
    assert len({name for name, _, _ in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize(("name", "reply", "outcome"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_output(db_app: tidal.App, asker: Any, standin: Any, name: str, reply: str, outcome: str) -> None:
    standin.script([{"match": ".", "answer": reply}])
    before = checksum(db_app)
    question = f"hostile case {name}"
    started = time.monotonic()
    if outcome == REFUSED:
        with pytest.raises(rag.UnsafeSQLError, match="refused") as caught:
            asker.ask(question)
        error: rag.SQLAnswerError = caught.value
    elif outcome == TIMEOUT:
        with pytest.raises(rag.SQLTimeoutError, match="time limit") as timed_out:
            asker.ask(question)
        error = timed_out.value
        assert time.monotonic() - started < TIMEOUT_S + 5
    else:
        answer = asker.ask(question)
        assert answer.truncated and len(answer.rows) == MAX_ROWS
        error = None  # type: ignore[assignment]
    assert checksum(db_app) == before, f"{name}: a table changed"
    if error is not None:
        # The refusal is a run of its own, with the reason and the SQL in its error.
        assert error.run_id
        run = db_app.sql("SELECT status, error FROM runs WHERE id = :id", {"id": error.run_id})[0]
        assert run["status"] == "error" and error.reason in run["error"]


GUARD_BYPASS = [
    "DELETE FROM sale",
    "UPDATE product SET price = 0",
    "DROP TABLE store",
    "CREATE TABLE evil (x INTEGER)",
    "INSERT INTO store (id, city) VALUES ('evil', 'x')",
]


def test_sqlite_connection_reads_only_allowed_tables(tmp_path: Any) -> None:
    """On SQLite the authorizer also keeps the query to the allowed tables
    (on PostgreSQL that is the guard's work alone: the app's user can read
    every table; docs/rag.md)."""
    app = tidal.App("shop", store=f"sqlite:///{tmp_path / 'shop.db'}", home=tmp_path / "home")
    try:
        seed(app)
        with pytest.raises(rag.SQLExecutionError, match="prohibited"):
            run_read_only(
                app.db.engine, app.db.connect, "SELECT * FROM secret", tables=["sale"], max_rows=10, timeout_s=1.0
            )
    finally:
        app.close()


@pytest.mark.parametrize("statement", GUARD_BYPASS)
def test_the_connection_refuses_what_the_guard_would(db_app: tidal.App, statement: str) -> None:
    """Defence in depth: a statement run on the read-only connection without
    the guard (as if the guard had a hole) fails, and nothing changes."""
    seed(db_app)
    for cls in TABLES:
        db_app.db.register(cls)
    before = checksum(db_app)
    with pytest.raises(rag.SQLExecutionError):
        run_read_only(
            db_app.db.engine,
            db_app.db.connect,
            statement,
            tables=[cls.relation() for cls in TABLES],
            max_rows=10,
            timeout_s=1.0,
        )
    assert checksum(db_app) == before
