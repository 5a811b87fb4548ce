"""Schema changes between runs: two Record classes with the same
``__relation__`` stand for the code before and after a change. Compatible
changes adapt the stored table; incompatible ones raise SchemaError saying
which field and what to do, and change nothing."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

import numpy as np
import pytest
from pydantic import Field

import tidal
from tidal import SchemaError

from .conftest import OpenApp


class ItemV1(tidal.Record):
    __relation__ = "item"
    name: str
    price: float = 0.0


def columns(app: tidal.App) -> list[str]:
    return app.sql("SELECT * FROM item WHERE 1 = 0").columns


@pytest.fixture
def old_rows(open_app: OpenApp) -> list[ItemV1]:
    """Rows written by the old code, in an app that has since stopped."""
    app = open_app()
    stored = app.insert_many([ItemV1(id="a", name="apple", price=1.5), ItemV1(id="b", name="pear")])
    app.close()
    return stored


# --------------------------------------------------------------------------- compatible changes


def test_adding_an_optional_field_on_an_existing_database(open_app: OpenApp, old_rows: list[ItemV1]) -> None:
    class ItemV2(tidal.Record):
        __relation__ = "item"
        name: str
        price: float = 0.0
        color: str | None = None

    app = open_app()  # the program started again with the new code
    old = app.get(ItemV2, "a")
    assert old is not None
    assert (old.name, old.price, old.color) == ("apple", 1.5, None)
    assert old.created_at == old_rows[0].created_at
    new = app.insert(ItemV2(id="c", name="plum", color="purple"))
    assert app.get(ItemV2, "c") == new
    assert [i.id for i in app.query(ItemV2, {"color": None}, order_by="id")] == ["a", "b"]
    assert "color" in columns(app)
    # and the old rows can be updated with the new field
    app.update(old.model_copy(update={"color": "red"}))
    assert app.get(ItemV2, "a").color == "red"  # type: ignore[union-attr]


def test_added_fields_with_defaults_read_back_as_their_defaults(open_app: OpenApp, old_rows: list[ItemV1]) -> None:
    class Size(enum.Enum):
        SMALL = "s"
        LARGE = "l"

    class ItemV2(tidal.Record):
        __relation__ = "item"
        name: str
        price: float = 0.0
        stock: int = 5
        size: Size = Size.LARGE
        tags: list[str] = Field(default_factory=lambda: ["fruit"])
        since: date = date(2020, 1, 1)
        seen: datetime | None = None
        vector: tidal.Vector = Field(default_factory=lambda: np.zeros(2, dtype=np.float32))
        extra: dict[str, Any] = Field(default_factory=lambda: {"v": 1})

    app = open_app()
    for item in app.query(ItemV2):
        assert (item.stock, item.size, item.tags) == (5, Size.LARGE, ["fruit"])
        assert (item.since, item.seen) == (date(2020, 1, 1), None)
        assert item.vector.dtype == np.float32 and item.vector.tolist() == [0.0, 0.0]
        assert item.extra == {"v": 1}
    # the defaults are stored, so plain SQL and where= see them too
    assert app.sql("SELECT count(*) FROM item WHERE stock = 5 AND size = 'l'").scalar() == 2
    assert [i.id for i in app.query(ItemV2, {"stock": 5, "size": Size.LARGE}, order_by="id")] == ["a", "b"]


def test_rows_written_by_old_code_after_the_change_read_back_with_defaults(db_app: tidal.App) -> None:
    """During a rolling deploy the old code keeps writing rows without the new column."""

    class ItemV2(tidal.Record):
        __relation__ = "item"
        name: str
        price: float = 0.0
        stock: int = 5

    db_app.insert(ItemV1(id="a", name="apple"))
    assert db_app.get(ItemV2, "a").stock == 5  # type: ignore[union-attr]
    db_app.insert(ItemV1(id="late", name="written by old code"))  # leaves stock NULL
    assert db_app.sql("SELECT stock FROM item WHERE id = 'late'").scalar() is None
    late = db_app.get(ItemV2, "late")
    assert late is not None and late.stock == 5
    assert db_app.get(ItemV1, "late") is not None


def test_two_versions_in_one_process(db_app: tidal.App) -> None:
    class ItemV2(tidal.Record):
        __relation__ = "item"
        name: str
        price: float = 0.0
        note: str | None = None

    db_app.insert(ItemV1(id="a", name="apple"))
    db_app.insert(ItemV2(id="b", name="pear", note="new"))
    assert db_app.get(ItemV1, "b") == ItemV1.model_validate(
        db_app.get(ItemV2, "b").model_dump(exclude={"note"})  # type: ignore[union-attr]
    )
    assert [i.note for i in db_app.query(ItemV2, order_by="id")] == [None, "new"]
    db_app.update(ItemV1(id="b", name="pear 2"))  # the old class leaves the new column alone
    assert db_app.get(ItemV2, "b").note == "new"  # type: ignore[union-attr]


def test_an_added_required_field_is_fine_on_an_empty_table(open_app: OpenApp) -> None:
    app = open_app()
    app.db.register(ItemV1)
    app.close()

    class ItemV2(tidal.Record):
        __relation__ = "item"
        name: str
        price: float = 0.0
        sku: str

    app = open_app()
    stored = app.insert(ItemV2(name="kiwi", sku="K-1"))
    assert app.get(ItemV2, stored.id) == stored


def test_compatible_type_changes(open_app: OpenApp) -> None:
    class Shade(enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        ONE = 1

    class V1(tidal.Record):
        __relation__ = "thing"
        color: str
        level: int
        data: bytes
        vector: tidal.Vector

    class V2(tidal.Record):
        __relation__ = "thing"
        color: Shade
        level: Level
        data: tidal.Vector
        vector: bytes

    app = open_app()
    vec = np.array([1.0, 2.0], dtype=np.float32)
    app.insert(V1(id="t", color="red", level=1, data=vec.tobytes(), vector=vec))
    app.close()
    app = open_app()
    got = app.get(V2, "t")
    assert got is not None
    assert (got.color, got.level, got.vector) == (Shade.RED, Level.ONE, vec.tobytes())
    assert np.array_equal(got.data, vec)


def test_a_removed_optional_field_is_left_alone(open_app: OpenApp) -> None:
    class V1(tidal.Record):
        __relation__ = "thing"
        name: str
        note: str | None = None

    class V2(tidal.Record):
        __relation__ = "thing"
        name: str

    app = open_app()
    app.insert(V1(id="t", name="n", note="kept"))
    app.close()
    app = open_app()
    assert app.get(V2, "t").name == "n"  # type: ignore[union-attr]
    app.insert(V2(id="u", name="m"))
    assert app.sql("SELECT note FROM thing ORDER BY id").tuples() == [("kept",), (None,)]


def test_a_removed_required_field(open_app: OpenApp, backend: str) -> None:
    class V1(tidal.Record):
        __relation__ = "thing"
        name: str
        size: int

    class V2(tidal.Record):
        __relation__ = "thing"
        name: str

    app = open_app()
    app.insert(V1(id="t", name="n", size=3))
    app.close()
    app = open_app()
    assert app.get(V2, "t").name == "n"  # type: ignore[union-attr]
    if backend == "postgres":
        # the column's NOT NULL is dropped: new rows without the field are stored
        app.insert(V2(id="u", name="m"))
        assert app.sql("SELECT size FROM thing ORDER BY id").tuples() == [(3,), (None,)]
    else:
        # SQLite cannot drop a NOT NULL: the error says why and what to do
        with pytest.raises(SchemaError, match=r"requires a value in column\(s\) \['size'\].*migrate") as info:
            app.insert(V2(id="u", name="m"))
        assert "nothing was written" in str(info.value)
        assert app.sql("SELECT count(*) FROM thing").scalar() == 1


def test_a_required_field_made_optional(open_app: OpenApp, backend: str) -> None:
    class V2(tidal.Record):
        __relation__ = "item"
        name: str | None = None
        price: float = 0.0

    app = open_app()
    app.insert(ItemV1(id="a", name="apple"))
    app.close()
    app = open_app()
    app.insert(V2(id="b", name="with a name"))
    assert app.get(V2, "a").name == "apple"  # type: ignore[union-attr]
    if backend == "postgres":
        app.insert(V2(id="c"))
        assert app.get(V2, "c").name is None  # type: ignore[union-attr]
    else:
        with pytest.raises(SchemaError, match=r"\['name'\]"):
            app.insert(V2(id="c"))
        assert app.get(V2, "c") is None


def test_optional_made_required_with_a_default(open_app: OpenApp) -> None:
    class V1(tidal.Record):
        __relation__ = "thing"
        tag: str | None = None

    class V2(tidal.Record):
        __relation__ = "thing"
        tag: str = "none"

    app = open_app()
    app.insert_many([V1(id="a", tag="x"), V1(id="b")])
    app.close()
    app = open_app()
    assert [(t.id, t.tag) for t in app.query(V2, order_by="id")] == [("a", "x"), ("b", "none")]


# --------------------------------------------------------------------------- incompatible changes


def test_a_new_required_field_on_a_table_with_rows(open_app: OpenApp, old_rows: list[ItemV1]) -> None:
    class ItemV2(tidal.Record):
        __relation__ = "item"
        name: str
        price: float = 0.0
        sku: str

    app = open_app()
    before = columns(app)
    with pytest.raises(SchemaError) as info:
        app.insert(ItemV2(name="kiwi", sku="K-1"))
    message = str(info.value)
    assert "'item'" in message and "'sku'" in message
    assert "give it a default" in message and "Optional" in message
    for call in (lambda: app.get(ItemV2, "a"), lambda: app.query(ItemV2)):
        with pytest.raises(SchemaError, match="'sku'"):
            call()
    assert columns(app) == before
    assert app.query(ItemV1, order_by="id") == old_rows  # the old code still works


@pytest.mark.parametrize(
    ("annotation", "now"),
    [
        (str, "str (a text column) but the stored column is float"),
        (int, "int (a int column) but the stored column is float"),
        (list[float], "list[float] (a json column) but the stored column is float"),
        (datetime, "datetime (a datetime column) but the stored column is float"),
        (bool, "bool (a bool column) but the stored column is float"),
        (bytes, "bytes (a bytes column) but the stored column is float"),
    ],
)
def test_a_type_change_is_refused(open_app: OpenApp, old_rows: list[ItemV1], annotation: Any, now: str) -> None:
    ItemV2 = type(
        "ItemV2", (tidal.Record,), {"__relation__": "item", "__annotations__": {"name": str, "price": annotation}}
    )
    app = open_app()
    with pytest.raises(SchemaError) as info:
        app.query(ItemV2)
    message = str(info.value)
    assert "relation 'item': field 'price' of ItemV2 is now " + now in message
    assert "keep the old type, add a new field instead, or migrate the table" in message
    assert app.query(ItemV1, order_by="id") == old_rows


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (str, list[str]),
        (list[str], str),
        (int, str),
        (str, int),
        (date, datetime),
        (tidal.Vector, list[float]),
    ],
)
def test_more_type_changes_are_refused(open_app: OpenApp, old: Any, new: Any) -> None:
    V1 = type("V1", (tidal.Record,), {"__relation__": "thing", "__annotations__": {"value": old | None}, "value": None})
    V2 = type("V2", (tidal.Record,), {"__relation__": "thing", "__annotations__": {"value": new}})
    app = open_app()
    app.insert(V1())
    app.close()
    with pytest.raises(SchemaError, match="field 'value' of V2 is now"):
        open_app().insert(V2.model_validate({"value": {str: "x", int: 1, datetime: datetime(2024, 1, 1)}.get(new, [])}))


def test_optional_made_required_with_empty_rows_is_refused_with_a_fix(open_app: OpenApp) -> None:
    class V1(tidal.Record):
        __relation__ = "thing"
        tag: str | None = None

    class V2(tidal.Record):
        __relation__ = "thing"
        tag: str

    app = open_app()
    app.insert_many([V1(id="a", tag="x"), V1(id="b"), V1(id="c")])
    app.close()
    app = open_app()
    with pytest.raises(
        SchemaError, match=r"field 'tag' of V2 is now required but 2 stored row\(s\) have no value"
    ) as info:
        app.query(V2)
    assert "UPDATE thing SET tag = :value WHERE tag IS NULL" in str(info.value)
    # doing what the message says fixes it
    app.sql("UPDATE thing SET tag = :value WHERE tag IS NULL", {"value": "?"}, write=True)
    assert [t.tag for t in app.query(V2, order_by="id")] == ["x", "?", "?"]


def test_a_refused_change_can_be_fixed_in_the_same_process(db_app: tidal.App) -> None:
    class Bad(tidal.Record):
        __relation__ = "item"
        name: int

    class Good(tidal.Record):
        __relation__ = "item"
        name: str
        price: float = 0.0
        stock: int | None = None

    db_app.insert(ItemV1(id="a", name="apple"))
    with pytest.raises(SchemaError, match="'name'"):
        db_app.insert(Bad(name=1))
    with pytest.raises(SchemaError, match="'name'"):  # still refused, not half-registered
        db_app.get(Bad, "a")
    db_app.insert(Good(id="b", name="pear", stock=2))
    assert [(i.id, i.stock) for i in db_app.query(Good, order_by="id")] == [("a", None), ("b", 2)]


def test_schema_error_is_a_tidal_error(open_app: OpenApp, old_rows: list[ItemV1]) -> None:
    class ItemV2(tidal.Record):
        __relation__ = "item"
        name: str
        price: str

    with pytest.raises(tidal.TidalError):
        open_app().query(ItemV2)
