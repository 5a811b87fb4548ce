"""Records: relation names, system fields and the round trip of every field
type through SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, Field

import tidal
from tidal.relations import relation_name

from .models import Color, Doc, Everything, Level


def everything(**overrides: Any) -> Everything:
    values: dict[str, Any] = {
        "text": "héllo ✓ 'quoted' \"double\"",
        "count": 2**53 + 1,
        "ratio": 0.1,
        "flag": True,
        "when": datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
        "day": date(1999, 12, 31),
        "color": Color.GREEN,
        "level": Level.HIGH,
        "tags": ["a", "b", ""],
        "meta": {"nested": {"list": [1, 2.5, None, "x"]}, "flag": False},
        "blob": bytes(range(256)),
        "embedding": np.array([0.25, -1.5, 3.0e-8, 1e30], dtype=np.float32),
    }
    values.update(overrides)
    return Everything(**values)


# --------------------------------------------------------------------------- naming


def test_relation_name_is_snake_case_of_class_name() -> None:
    class DocChunk(tidal.Record):
        text: str

    class HTTPRequestLog(tidal.Record):
        path: str

    class Purchase(tidal.Record):
        item: str

    assert DocChunk.relation() == "doc_chunk"
    assert relation_name(HTTPRequestLog) == "http_request_log"
    assert Purchase.relation() == "purchase"


def test_relation_override_is_not_inherited() -> None:
    class Base(tidal.Record):
        __relation__ = "custom_table"
        text: str

    class SubDoc(Base):
        pass

    assert Base.relation() == "custom_table"
    assert SubDoc.relation() == "sub_doc"


def test_table_has_the_relation_name(db_app: tidal.App) -> None:
    class DocChunk(tidal.Record):
        text: str

    class Renamed(tidal.Record):
        __relation__ = "my_chunks"
        text: str

    db_app.insert(DocChunk(text="a"))
    db_app.insert(Renamed(text="b"))
    assert db_app.sql("SELECT text FROM doc_chunk").tuples() == [("a",)]
    assert db_app.sql("SELECT text FROM my_chunks").tuples() == [("b",)]


def test_backend_is_the_one_asked_for(db_app: tidal.App, backend: str) -> None:
    assert db_app.db.dialect == {"sqlite": "sqlite", "postgres": "postgresql"}[backend]


# --------------------------------------------------------------------------- system fields


def test_insert_sets_id_and_timestamps(db_app: tidal.App) -> None:
    before = datetime.now(UTC)
    stored = db_app.insert(Doc(title="a"))
    after = datetime.now(UTC)
    assert isinstance(stored.id, str) and stored.id
    assert stored.created_at is not None and stored.updated_at is not None
    assert before <= stored.created_at <= after
    assert stored.created_at == stored.updated_at
    fetched = db_app.get(Doc, stored.id)
    assert fetched == stored


def test_ids_are_unique_and_an_explicit_id_is_kept(db_app: tidal.App) -> None:
    ids = {db_app.insert(Doc(title=str(i))).id for i in range(5)}
    assert len(ids) == 5
    stored = db_app.insert(Doc(id="doc-1", title="mine"))
    assert stored.id == "doc-1"
    fetched = db_app.get(Doc, "doc-1")
    assert fetched is not None and fetched.title == "mine"


def test_update_changes_updated_at_and_keeps_created_at(db_app: tidal.App) -> None:
    stored = db_app.insert(Doc(title="a"))
    # A caller can not move created_at by sending another value.
    changed = stored.model_copy(update={"title": "b", "created_at": datetime(2000, 1, 1, tzinfo=UTC)})
    updated = db_app.update(changed)
    assert updated.created_at == stored.created_at
    assert updated.updated_at is not None and stored.updated_at is not None
    assert updated.updated_at > stored.updated_at
    fetched = db_app.get(Doc, stored.id)
    assert fetched == updated
    assert fetched is not None and fetched.title == "b"


def test_get_of_a_missing_id_is_none(db_app: tidal.App) -> None:
    assert db_app.get(Doc, "nope") is None


# --------------------------------------------------------------------------- round trips


def test_every_field_type_round_trips(db_app: tidal.App) -> None:
    record = everything()
    stored = db_app.insert(record)
    fetched = db_app.get(Everything, record.id)
    assert fetched is not None
    assert fetched == stored
    assert fetched.text == record.text
    assert fetched.count == 2**53 + 1 and type(fetched.count) is int
    assert fetched.ratio == 0.1
    assert fetched.flag is True
    assert fetched.when == record.when
    assert fetched.day == date(1999, 12, 31) and type(fetched.day) is date
    assert fetched.color is Color.GREEN
    assert fetched.level is Level.HIGH
    assert fetched.tags == ["a", "b", ""]
    assert fetched.meta == record.meta
    assert fetched.blob == bytes(range(256))


def test_stored_values_are_plain_sql_values(db_app: tidal.App) -> None:
    """Enums are stored as their values, so SQL can filter on them."""
    db_app.insert(everything())
    row = db_app.sql("SELECT color, level FROM everything").tuples()[0]
    assert row == ("green", 2)
    assert db_app.sql("SELECT count(*) FROM everything WHERE level = :l", {"l": 2}).scalar() == 1


def test_query_by_enum_value(db_app: tidal.App) -> None:
    db_app.insert(everything(color=Color.RED))
    db_app.insert(everything(color=Color.GREEN))
    found = db_app.query(Everything, {"color": Color.RED})
    assert [r.color for r in found] == [Color.RED]


def test_false_zero_empty_and_none_round_trip(db_app: tidal.App) -> None:
    record = everything(flag=False, count=0, ratio=-0.0, text="", tags=[], meta={}, blob=b"")
    db_app.insert(record)
    fetched = db_app.get(Everything, record.id)
    assert fetched is not None
    assert (fetched.flag, fetched.count, fetched.text, fetched.tags, fetched.meta, fetched.blob) == (
        False,
        0,
        "",
        [],
        {},
        b"",
    )
    doc = db_app.insert(Doc(title="t", tag=None))
    got = db_app.get(Doc, doc.id)
    assert got is not None and got.tag is None


def test_bytes_with_non_utf8_content(db_app: tidal.App) -> None:
    payload = b"\xff\xfe\x00\x80 not utf-8 \xc3\x28 \x00"
    with pytest.raises(UnicodeDecodeError):
        payload.decode("utf-8")
    record = everything(blob=payload)
    db_app.insert(record)
    fetched = db_app.get(Everything, record.id)
    assert fetched is not None and fetched.blob == payload and type(fetched.blob) is bytes


# --------------------------------------------------------------------------- time zones


def test_aware_datetimes_come_back_aware_utc(db_app: tidal.App) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2024, 6, 1, 14, 0, 0, tzinfo=paris)
    record = everything(when=local)
    db_app.insert(record)
    fetched = db_app.get(Everything, record.id)
    assert fetched is not None
    assert fetched.when == local  # the same instant
    assert fetched.when.utcoffset() == timedelta(0)
    assert fetched.when.replace(tzinfo=None) == datetime(2024, 6, 1, 12, 0, 0)


def test_naive_datetimes_are_taken_as_utc(db_app: tidal.App) -> None:
    record = everything(when=datetime(2024, 6, 1, 12, 0, 0))
    db_app.insert(record)
    fetched = db_app.get(Everything, record.id)
    assert fetched is not None
    assert fetched.when == datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def test_system_timestamps_come_back_aware_utc(db_app: tidal.App) -> None:
    stored = db_app.insert(Doc(title="a"))
    fetched = db_app.get(Doc, stored.id)
    assert fetched is not None and fetched.created_at is not None and fetched.updated_at is not None
    assert fetched.created_at.utcoffset() == timedelta(0)
    assert fetched.updated_at.utcoffset() == timedelta(0)


def test_order_by_datetime_compares_instants_across_time_zones(db_app: tidal.App) -> None:
    """12:00+05:00 is 07:00 UTC: earlier than 10:00 UTC."""
    late = everything(text="late", when=datetime(2024, 1, 1, 10, 0, tzinfo=UTC))
    early = everything(text="early", when=datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=5))))
    db_app.insert_many([late, early])
    assert [r.text for r in db_app.query(Everything, order_by="when")] == ["early", "late"]


# --------------------------------------------------------------------------- vectors


def test_vectors_come_back_as_equal_float32_arrays(db_app: tidal.App) -> None:
    vector = np.random.default_rng(7).standard_normal(384).astype(np.float32)
    record = everything(embedding=vector)
    db_app.insert(record)
    fetched = db_app.get(Everything, record.id)
    assert fetched is not None
    assert isinstance(fetched.embedding, np.ndarray)
    assert fetched.embedding.dtype == np.float32
    assert fetched.embedding.shape == (384,)
    assert np.array_equal(fetched.embedding, vector)
    fetched.embedding[0] = 99.0  # a writable copy, not a view of the row bytes
    assert np.array_equal(db_app.get(Everything, record.id).embedding, vector)  # type: ignore[union-attr]


def test_vectors_from_lists_and_float64_are_float32(db_app: tidal.App) -> None:
    record = everything(embedding=[1, 2.5, -3])
    db_app.insert(record)
    fetched = db_app.get(Everything, record.id)
    assert fetched is not None and fetched.embedding.dtype == np.float32
    assert fetched.embedding.tolist() == [1.0, 2.5, -3.0]
    as64 = everything(embedding=np.array([0.1, 0.2], dtype=np.float64))
    db_app.insert(as64)
    got = db_app.get(Everything, as64.id)
    assert got is not None and np.array_equal(got.embedding, np.array([0.1, 0.2], dtype=np.float32))


def test_optional_vector_may_be_none(db_app: tidal.App) -> None:
    class Chunk(tidal.Record):
        text: str
        embedding: tidal.Vector | None = None

    bare = db_app.insert(Chunk(text="no vector yet"))
    fetched = db_app.get(Chunk, bare.id)
    assert fetched is not None and fetched.embedding is None
    fetched.embedding = np.ones(3, dtype=np.float32)
    db_app.update(fetched)
    again = db_app.get(Chunk, bare.id)
    assert again is not None and again.embedding is not None and again.embedding.tolist() == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------- JSON


class Point(BaseModel):
    x: int
    y: int


def test_json_fields_keep_nested_dates_enums_and_models(db_app: tidal.App) -> None:
    class Event(tidal.Record):
        days: list[date]
        colors: dict[str, Color]
        stamps: list[datetime]
        points: list[Point]
        levels: list[Level]
        anything: dict[str, Any] = Field(default_factory=dict)

    record = Event(
        days=[date(2024, 1, 2), date(2020, 2, 29)],
        colors={"bg": Color.RED, "fg": Color.GREEN},
        stamps=[datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)],
        points=[Point(x=1, y=2)],
        levels=[Level.LOW, Level.HIGH],
        anything={"deep": [{"a": [1, {"b": None}]}], "unicode": "ü✓"},
    )
    db_app.insert(record)
    fetched = db_app.get(Event, record.id)
    assert fetched is not None
    assert fetched.days == [date(2024, 1, 2), date(2020, 2, 29)]
    assert fetched.colors == {"bg": Color.RED, "fg": Color.GREEN}
    assert all(isinstance(c, Color) for c in fetched.colors.values())
    assert fetched.stamps == [datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)]
    assert fetched.points == [Point(x=1, y=2)]
    assert fetched.levels == [Level.LOW, Level.HIGH]
    assert fetched.anything == record.anything
    assert fetched == record.model_copy(update={"created_at": fetched.created_at, "updated_at": fetched.updated_at})
