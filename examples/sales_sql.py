"""Questions about a small shop's sales answered with SQL, read-only.

The shop is three relations, ``Product``, ``Store`` and ``Sale`` (30 days
of sales, generated from a fixed seed), and ``rag.TextToSQL`` turns a
question into one checked SELECT over them, runs it on a read-only
connection with a time and a row limit, and returns the rows with the SQL.
Each question is a run in the runs log; a correction given as feedback
becomes an example that later, similar questions are shown.

The model: ``TIDAL_SQL_MODEL`` names any OpenAI-compatible endpoint
(``openai://gpt-4o-mini``, ``http://127.0.0.1:8080/v1#model``). Without it,
the stand-in model answers, scripted with the right SQL for the questions in
``SCRIPTED`` (any other question gets pseudo-words, which the guard refuses).

    python examples/sales_sql.py "How many units of Fruity Fedora were sold in the last 7 days?"
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

import tidal
from tidal import models, rag

MODEL_ENV = "TIDAL_SQL_MODEL"
SEED = 7
DAYS = 30
PRODUCTS = [
    ("fedora", "Fruity Fedora", 39.0),
    ("cap", "Plain Cap", 12.5),
    ("beanie", "Woolly Beanie", 18.0),
    ("scarf", "Silk Scarf", 45.0),
    ("boots", "Rain Boots", 79.0),
]
STORES = [("oslo", "Oslo"), ("bergen", "Bergen"), ("trondheim", "Trondheim")]


class Product(tidal.Record):
    """A product the shop sells."""

    name: str = Field(description="the product's name as customers know it, e.g. 'Fruity Fedora'")
    price: float
    """Unit price in euros."""


class Store(tidal.Record):
    """One of the shop's stores."""

    city: str


class Sale(tidal.Record):
    """Units of one product sold in one store at one moment."""

    product_id: str
    """The product sold (product.id)."""
    store_id: str
    """The store that sold it (store.id)."""
    units: int
    """How many units were sold."""
    sold_at: datetime
    """When, in UTC."""


def generate(now: datetime | None = None) -> list[tidal.Record]:
    """The shop's records: products, stores and about 450 sales over the
    ``DAYS`` days before ``now``; the same for the same ``now``."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    rng = random.Random(SEED)
    records: list[tidal.Record] = [Product(id=pid, name=name, price=price) for pid, name, price in PRODUCTS]
    records += [Store(id=sid, city=city) for sid, city in STORES]
    for day in range(DAYS):
        for sid, _ in STORES:
            for n in range(rng.randint(3, 7)):
                records.append(
                    Sale(
                        id=f"{sid}-{day:02d}-{n}",
                        product_id=rng.choice(PRODUCTS)[0],
                        store_id=sid,
                        units=rng.randint(1, 5),
                        sold_at=now - timedelta(days=day, minutes=rng.randint(1, 24 * 60 - 1)),
                    )
                )
    return records


SCRIPTED: dict[str, dict[str, str]] = {
    "How many units of Fruity Fedora were sold in the last 7 days?": {
        "sqlite": "SELECT SUM(s.units) AS units FROM sale s JOIN product p ON p.id = s.product_id\n"
        "WHERE p.name = 'Fruity Fedora' AND s.sold_at >= datetime('now', '-7 days')",
        "postgresql": "SELECT SUM(s.units) AS units FROM sale s JOIN product p ON p.id = s.product_id\n"
        "WHERE p.name = 'Fruity Fedora' AND s.sold_at >= now() - interval '7 days'",
    },
    "Which store sold the most units in the last 30 days?": {
        "sqlite": "SELECT st.city, SUM(s.units) AS units FROM sale s JOIN store st ON st.id = s.store_id\n"
        "WHERE s.sold_at >= datetime('now', '-30 days') GROUP BY st.city ORDER BY units DESC LIMIT 1",
        "postgresql": "SELECT st.city, SUM(s.units) AS units FROM sale s JOIN store st ON st.id = s.store_id\n"
        "WHERE s.sold_at >= now() - interval '30 days' GROUP BY st.city ORDER BY units DESC LIMIT 1",
    },
    "What was the revenue of each product?": {
        "sqlite": "SELECT p.name, ROUND(SUM(s.units * p.price), 2) AS revenue FROM sale s\n"
        "JOIN product p ON p.id = s.product_id GROUP BY p.name ORDER BY revenue DESC",
        "postgresql": "SELECT p.name, ROUND(CAST(SUM(s.units * p.price) AS NUMERIC), 2) AS revenue FROM sale s\n"
        "JOIN product p ON p.id = s.product_id GROUP BY p.name ORDER BY revenue DESC",
    },
}
"""The questions the stand-in answers, with the SQL a good model writes."""


def script(dialect: str) -> list[dict[str, Any]]:
    """Stand-in rules: each scripted question (matched by its words) gets its SQL in a code block."""
    rules = []
    for question, sql in SCRIPTED.items():
        words = r"\W+".join(question.rstrip("?").split())
        rules.append({"match": f"(?i){words}", "answer": f"```sql\n{sql[dialect]}\n```"})
    return rules


@contextlib.contextmanager
def open_model(app: tidal.App) -> Iterator[Any]:
    """The model: ``TIDAL_SQL_MODEL``'s endpoint, else the scripted stand-in
    served on a thread of this process."""
    url = os.environ.get(MODEL_ENV)
    if url:
        llm = models.connect(url, app=app)
        try:
            yield llm
        finally:
            llm.close()
        return
    from tidal.models.http import build_app, serving
    from tidal.models.standin import StandIn

    with serving(build_app(StandIn(script=script(app.db.dialect)))) as base_url:
        llm = models.connect(base_url + "#stand-in", app=app, max_retries=0)
        try:
            yield llm
        finally:
            llm.close()


def open_shop(app: tidal.App, llm: Any) -> rag.TextToSQL:
    """The shop's data (stored once) and its TextToSQL."""
    app.db.register(Product)
    if app.db.count(Product) == 0:
        app.insert_many(generate())
    return rag.TextToSQL(app, llm, tables=[Sale, Product, Store], max_rows=50, timeout_s=2.0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    questions = args or list(SCRIPTED)
    with tidal.App("sales") as app, open_model(app) as llm:
        shop = open_shop(app, llm)
        for question in questions:
            print(f"Q: {question}")
            try:
                answer = shop.ask(question)
            except rag.SQLAnswerError as exc:
                print(f"   no answer (run {exc.run_id}): {exc.reason}\n")
                continue
            print("   " + answer.sql)
            for row in answer.rows:
                print("   ", row)
            print(f"   (run {answer.run_id}{', truncated' if answer.truncated else ''})\n")
        shop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
