"""A small shop for the text-to-SQL tests: products, stores, sales, and a
checksum of every table's contents."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from pydantic import Field

import tidal

NOW = datetime.now(UTC).replace(microsecond=0)


class Product(tidal.Record):
    """A product the shop sells."""

    name: str = Field(description="the product's name, e.g. 'Fruity Fedora'")
    price: float
    """Unit price in euros."""


class Store(tidal.Record):
    """A store."""

    city: str


class Sale(tidal.Record):
    """Units of one product sold in one store at one time."""

    product_id: str
    """The product sold (product.id)."""
    store_id: str
    """Where (store.id)."""
    units: int
    sold_at: datetime


class Secret(tidal.Record):
    """A table the text-to-SQL tests never allow."""

    token: str


TABLES = [Sale, Product, Store]


def seed(app: tidal.App) -> None:
    """Three products, two stores, sales over 20 days, one secret."""
    app.insert_many(
        [
            Product(id="p1", name="Fruity Fedora", price=25.0),
            Product(id="p2", name="Plain Cap", price=10.0),
            Product(id="p3", name="Woolly Beanie", price=15.0),
        ]
    )
    app.insert_many([Store(id="s1", city="Oslo"), Store(id="s2", city="Bergen")])
    sales = []
    for day in range(20):
        for i, product in enumerate(("p1", "p2", "p3")):
            sales.append(
                Sale(
                    id=f"sale-{day}-{product}",
                    product_id=product,
                    store_id="s1" if day % 2 else "s2",
                    units=1 + (day + i) % 4,
                    sold_at=NOW - timedelta(days=day, hours=1),
                )
            )
    app.insert_many(sales)
    app.insert(Secret(id="k", token="hunter2"))


def table_names(app: tidal.App) -> list[str]:
    """Every table of the app's relations database."""
    if app.db.dialect == "sqlite":
        rows = app.sql("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")
    else:
        rows = app.sql(
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema() ORDER BY table_name"
        )
    return [r["name"] for r in rows]


def checksum(app: tidal.App) -> str:
    """A digest of the shop's tables, rows and contents (and the list of tables)."""
    digest = hashlib.sha256(repr(table_names(app)).encode())
    for cls in (*TABLES, Secret):
        for row in app.sql(f'SELECT * FROM "{cls.relation()}" ORDER BY id').tuples():
            digest.update(repr(row).encode())
    return digest.hexdigest()
