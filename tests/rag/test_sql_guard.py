"""The guard alone (no database): what it accepts in each dialect, how it
follows CTE scopes and folds names, and what it writes back."""

from __future__ import annotations

import pytest

from tidal import rag
from tidal.rag.sql import extract_sql

TABLES = ["sale", "product", "store"]

ACCEPTED = {
    "sqlite": [
        "SELECT p.name, SUM(s.units) AS units FROM sale s JOIN product p ON p.id = s.product_id "
        "WHERE s.sold_at >= datetime('now', '-7 days') AND p.name LIKE '%Fedora%' GROUP BY p.name "
        "HAVING SUM(s.units) > 1 ORDER BY units DESC LIMIT 5 OFFSET 1",
        "SELECT strftime('%Y-%m', sold_at) AS month, count(*), avg(units), total(units), iif(units > 1, 'a', 'b'), "
        "coalesce(store_id, 'x'), substr(id, 1, 3), julianday('now') - julianday(sold_at) FROM sale GROUP BY month",
        "WITH RECURSIVE days(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM days WHERE n < 6) "
        "SELECT n, (SELECT count(*) FROM sale WHERE date(sold_at) = date('now', '-' || n || ' days')) FROM days",
        "SELECT name FROM product UNION SELECT city FROM store EXCEPT SELECT 'Oslo'",
        "SELECT id, rank() OVER (PARTITION BY store_id ORDER BY units DESC) FROM sale",
        "SELECT * FROM SALE WHERE EXISTS (SELECT 1 FROM product WHERE product.id = SALE.product_id)",
        "SELECT CAST(units AS REAL) / 2, CASE WHEN units BETWEEN 1 AND 2 THEN 'few' ELSE 'many' END FROM sale",
    ],
    "postgresql": [
        "SELECT date_trunc('day', sold_at) AS day, sum(units) FROM sale "
        "WHERE sold_at >= now() - interval '7 days' GROUP BY 1 ORDER BY 1",
        "SELECT extract(year FROM sold_at), sold_at::date, count(DISTINCT store_id), string_agg(id, ',') "
        "FROM sale GROUP BY 1, 2",
        "SELECT round(CAST(sum(s.units * p.price) AS numeric), 2) FROM sale s JOIN product p ON p.id = s.product_id",
        "SELECT count(*) FILTER (WHERE units > 2), percentile_cont(0.5) WITHIN GROUP (ORDER BY units) FROM sale",
        "WITH a AS (SELECT * FROM sale), b AS (SELECT * FROM a) SELECT count(*) FROM b",
        'SELECT * FROM "sale"',
    ],
}


@pytest.mark.parametrize(
    ("dialect", "sql"), [(d, q) for d, qs in ACCEPTED.items() for q in qs], ids=lambda v: str(v)[:40]
)
def test_accepts_reads_of_allowed_tables(dialect: str, sql: str) -> None:
    checked = rag.check(sql, dialect=dialect, tables=TABLES)
    assert checked.tables and set(checked.tables) <= set(TABLES)
    assert rag.check(checked.sql, dialect=dialect, tables=TABLES) == checked  # what runs passes again


def test_cte_scopes_are_followed() -> None:
    check = rag.check
    assert check("WITH secret AS (SELECT 1 AS x) SELECT * FROM secret", dialect="sqlite", tables=TABLES).ctes == (
        "secret",
    )
    refused = [
        "SELECT * FROM (WITH secret AS (SELECT 1) SELECT * FROM secret) t, secret",
        "WITH a AS (SELECT * FROM secret), secret AS (SELECT 1) SELECT * FROM a",
        "WITH secret AS (SELECT * FROM secret) SELECT * FROM secret",  # not RECURSIVE: the inner one is the table
    ]
    for sql in refused:
        with pytest.raises(rag.UnsafeSQLError, match="'secret' is not one of the allowed tables"):
            check(sql, dialect="postgresql", tables=TABLES)


def test_names_fold_as_the_database_folds_them() -> None:
    assert rag.check('SELECT * FROM "SALE"', dialect="sqlite", tables=TABLES).tables == ("sale",)
    with pytest.raises(rag.UnsafeSQLError, match="'SALE' is not one of"):
        rag.check('SELECT * FROM "SALE"', dialect="postgresql", tables=TABLES)
    assert rag.check("SELECT * FROM SALE", dialect="postgresql", tables=TABLES).tables == ("sale",)


def test_comments_do_not_reach_the_database() -> None:
    checked = rag.check("SELECT 1 /* ; DELETE FROM sale */ AS one FROM sale -- bye", dialect="sqlite", tables=TABLES)
    assert checked.sql == "SELECT 1 AS one FROM sale"


def test_other_dialects_are_refused() -> None:
    with pytest.raises(rag.UnsafeSQLError, match="supports postgresql, sqlite"):
        rag.check("SELECT 1", dialect="mysql", tables=TABLES)


@pytest.mark.parametrize(
    ("reply", "sql"),
    [
        ("```sql\nSELECT 1\n```", "SELECT 1"),
        ("Sure:\n```SQL\nSELECT 2\n```\nand\n```sql\nDROP TABLE x\n```", "SELECT 2"),
        ("```\nSELECT 3\n```", "SELECT 3"),
        ("  SELECT 4  ", "SELECT 4"),
    ],
)
def test_extract_sql(reply: str, sql: str) -> None:
    assert extract_sql(reply) == sql
