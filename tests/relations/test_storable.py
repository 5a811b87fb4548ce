"""Values no database column can hold (integers past 64 bits, text with a
lone surrogate, JSON nested too deep) are a RecordValidationError naming the
field, in inserts, batches, updates and query filters, on SQLite and
PostgreSQL, and nothing is written. A record change and its outbox row are
one transaction."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field

import tidal
from tidal import RecordValidationError

from .models import Doc


class Tally(tidal.Record):
    n: int = 0
    note: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)
    tags: list[Any] = Field(default_factory=list)


def deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


BAD = [
    ({"n": 2**70}, "n", "64 bits"),
    ({"n": -(2**63) - 1}, "n", "64 bits"),
    ({"note": "a\udc80b"}, "note", "lone surrogate"),
    ({"meta": {"k": 2**64}}, "meta.k", "64 bits"),
    ({"meta": {"k": ["ok", "\ud800"]}}, "meta.k.1", "lone surrogate"),
    ({"meta": {"\udc80": 1}}, "meta", "lone surrogate"),
    ({"tags": [deep(300)]}, "tags", "nested at most"),
]


@pytest.mark.parametrize(("fields", "field", "why"), BAD, ids=[b[1] + "-" + b[2] for b in BAD])
def test_unstorable_values_are_refused_naming_the_field(
    db_app: tidal.App, fields: dict[str, Any], field: str, why: str
) -> None:
    good = Tally(n=1)
    db_app.insert(good)
    for attempt in (
        lambda: db_app.insert_many([{"note": "fine"}, fields], relation=Tally),
        lambda: db_app.insert(Tally.model_validate(fields)),
        lambda: db_app.upsert_many([fields], relation=Tally),
        lambda: db_app.update(good.model_copy(update=fields)),
    ):
        with pytest.raises(RecordValidationError) as caught:
            attempt()
        assert why in str(caught.value)
        assert any(f.startswith(field) and why in m for _, f, m in caught.value.errors), caught.value.errors
    stored = db_app.query(Tally)
    assert [(t.id, t.n, t.note) for t in stored] == [(good.id, 1, "")]


def test_the_limits_themselves_are_stored(db_app: tidal.App) -> None:
    edge = db_app.insert(Tally(n=2**63 - 1, note="é\U0001f600", meta={"k": -(2**63)}, tags=[deep(150)]))
    low = db_app.insert(Tally(n=-(2**63)))
    assert db_app.get(Tally, edge.id) == edge
    assert [t.id for t in db_app.query(Tally, {"n": -(2**63)})] == [low.id]


@pytest.mark.parametrize(("where", "field"), [({"n": 2**70}, "n"), ({"note": "\udc80"}, "note")])
def test_unstorable_filter_values_are_refused_naming_the_field(
    db_app: tidal.App, where: dict[str, Any], field: str
) -> None:
    db_app.insert(Tally())
    with pytest.raises(RecordValidationError, match=f"field {field!r}"):
        db_app.query(Tally, where)


def test_ids_with_a_lone_surrogate_are_refused(db_app: tidal.App) -> None:
    kept = db_app.insert(Tally())
    with pytest.raises(RecordValidationError, match="lone surrogate"):
        db_app.get(Tally, "x\udc80")
    with pytest.raises(RecordValidationError, match="lone surrogate"):
        db_app.delete_many(Tally, [kept.id, "x\udc80"])
    assert db_app.get(Tally, kept.id) == kept


class OutboxBroke(Exception):
    pass


def test_a_record_change_and_its_outbox_row_are_one_transaction(
    db_app: tidal.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = db_app.db
    db.watch(Doc, "Counter", "on_doc")
    kept = db_app.insert(Doc(title="kept", views=1))
    assert [c.record_id for c in db.pending_changes()] == [kept.id]
    real_write = db.outbox.write

    def failing(conn: Any, rows: list[dict[str, Any]]) -> None:
        real_write(conn, rows)  # the row goes into the transaction, then the write fails
        raise OutboxBroke("the outbox write failed")

    monkeypatch.setattr(db.outbox, "write", failing)
    with pytest.raises(OutboxBroke):
        db_app.insert(Doc(title="new"))
    with pytest.raises(OutboxBroke):
        db_app.upsert(Doc(id=kept.id, title="upserted"))
    with pytest.raises(OutboxBroke):
        db_app.update(kept.model_copy(update={"title": "updated"}))
    with pytest.raises(OutboxBroke):
        db_app.delete(Doc, kept.id)
    monkeypatch.setattr(db.outbox, "write", real_write)
    assert [(d.id, d.title) for d in db_app.query(Doc)] == [(kept.id, "kept")]
    assert [c.record_id for c in db.pending_changes()] == [kept.id]
