"""Validation: a record that fails its schema is rejected with an error
naming the field and the expected type, and a batch with one bad record
writes nothing."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import numpy as np
import pytest

import tidal
from tidal import RecordValidationError

from .models import Color, Doc, Everything


def doc_count(app: tidal.App) -> int:
    return len(app.query(Doc))


def good_everything(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "text": "t",
        "count": 1,
        "ratio": 1.0,
        "flag": True,
        "when": datetime(2024, 1, 1),
        "day": date(2024, 1, 1),
        "color": "red",
        "level": 1,
        "tags": [],
        "meta": {},
        "blob": b"",
        "embedding": [0.0],
    }
    values.update(overrides)
    return values


@pytest.mark.parametrize(
    ("field", "value", "expected", "message"),
    [
        ("count", "many", "int", "valid integer"),
        ("count", 1.5, "int", "integer"),
        ("ratio", "fast", "float", "valid number"),
        ("flag", "perhaps", "bool", "valid boolean"),
        ("when", "yesterday", "datetime", "datetime"),
        ("day", "2024-13-45", "date", "date"),
        ("color", "blue", "Color", "'red' or 'green'"),
        ("level", 7, "Level", "1 or 2"),
        ("tags", "not a list", "list[str]", "valid list"),
        ("meta", [1, 2], "dict[str, Any]", "valid dictionary"),
        ("blob", 3.5, "bytes", "valid bytes"),
        ("embedding", [[1.0, 2.0]], "Vector", "1-dimensional"),
        ("embedding", ["a", "b"], "Vector", "vector of numbers"),
        ("text", None, "str", "valid string"),
    ],
)
def test_a_bad_field_is_named_with_its_expected_type(
    db_app: tidal.App, field: str, value: object, expected: str, message: str
) -> None:
    with pytest.raises(RecordValidationError) as info:
        db_app.insert(Everything, good_everything(**{field: value}))
    text = str(info.value)
    assert f"field {field!r}" in text
    assert f"expected {expected}" in text
    assert message in text
    assert "nothing was written" in text
    assert info.value.errors[0][:2] == (0, field)
    assert db_app.query(Everything) == []


def test_a_missing_required_field(db_app: tidal.App) -> None:
    with pytest.raises(RecordValidationError, match=r"field 'title'.*expected str: Field required") as info:
        db_app.insert(Doc, {"views": 3})
    assert info.value.errors == [(0, "title", "expected str: Field required")]


def test_an_unknown_field_is_refused(db_app: tidal.App) -> None:
    with pytest.raises(RecordValidationError, match=r"field 'colour'.*Extra inputs are not permitted"):
        db_app.insert(Doc, {"title": "a", "colour": "red"})
    assert doc_count(db_app) == 0


def test_a_nested_bad_value_is_named_by_its_path(db_app: tidal.App) -> None:
    with pytest.raises(RecordValidationError, match=r"field 'tags\.1'.*expected list\[str\]"):
        db_app.insert(Everything, good_everything(tags=["ok", 5]))


def test_constructing_a_bad_record_names_the_field() -> None:
    """Records are pydantic models: a bad value is refused where it is made."""
    with pytest.raises(ValueError, match="views"):
        Doc(title="a", views="many")  # type: ignore[arg-type]
    doc = Doc(title="a")
    with pytest.raises(ValueError, match="views"):
        doc.views = "many"  # type: ignore[assignment]


def test_records_that_skipped_validation_are_checked_before_writing(db_app: tidal.App) -> None:
    """model_copy(update=...) and model_construct do not validate; the write does."""
    stored = db_app.insert(Doc(title="a", views=1))
    with pytest.raises(RecordValidationError, match=r"field 'views'.*expected int"):
        db_app.update(stored.model_copy(update={"views": "many"}))
    with pytest.raises(RecordValidationError, match=r"field 'title'.*expected str"):
        db_app.insert(Doc.model_construct(title=None))
    with pytest.raises(RecordValidationError, match=r"field 'views'.*expected int"):
        db_app.upsert(stored.model_copy(update={"views": [1]}))
    assert db_app.query(Doc) == [stored]
    # and a good copy is coerced like a new record would be
    updated = db_app.update(stored.model_copy(update={"views": "7"}))
    assert updated.views == 7
    assert db_app.get(Doc, stored.id).views == 7  # type: ignore[union-attr]


def test_one_bad_record_in_a_batch_writes_nothing(db_app: tidal.App) -> None:
    batch = [{"title": "ok 1"}, {"title": "ok 2"}, {"title": "bad", "views": "lots"}, {"title": "ok 3"}]
    with pytest.raises(RecordValidationError, match=r"record 2, field 'views'"):
        db_app.insert_many(batch, relation=Doc)
    assert doc_count(db_app) == 0
    with pytest.raises(RecordValidationError):
        db_app.upsert_many(batch, relation=Doc)
    assert doc_count(db_app) == 0


def test_every_problem_of_a_batch_is_reported(db_app: tidal.App) -> None:
    batch = [{"title": "ok"}, {"views": 1}, {"title": "x", "score": "high", "public": "maybe"}]
    with pytest.raises(RecordValidationError, match="3 problem") as info:
        db_app.insert_many(batch, relation=Doc)
    assert [(i, f) for i, f, _ in info.value.errors] == [(1, "title"), (2, "score"), (2, "public")]
    assert all("expected" in m for _, _, m in info.value.errors)


def test_a_bad_record_among_good_ones_in_update_many_writes_nothing(db_app: tidal.App) -> None:
    a, b = db_app.insert_many([Doc(title="a"), Doc(title="b")])
    with pytest.raises(RecordValidationError, match="record 1, field 'views'"):
        db_app.update_many([a.model_copy(update={"title": "A"}), b.model_copy(update={"views": "x"})])
    assert sorted(d.title for d in db_app.query(Doc)) == ["a", "b"]


def test_a_record_of_another_class_is_refused_in_a_typed_batch(db_app: tidal.App) -> None:
    class Other(tidal.Record):
        title: str

    with pytest.raises(RecordValidationError, match="record 1: expected a Doc, got Other"):
        db_app.insert_many([Doc(title="a"), Other(title="b")], relation=Doc)
    assert doc_count(db_app) == 0


def test_a_long_bad_value_is_shortened_in_the_message(db_app: tidal.App) -> None:
    with pytest.raises(RecordValidationError) as info:
        db_app.insert(Doc, {"title": "a", "views": "9" * 10_000 + "x"})
    assert len(str(info.value)) < 400


def test_an_empty_id_is_refused(db_app: tidal.App) -> None:
    with pytest.raises(RecordValidationError, match="field 'id'"):
        db_app.insert(Doc, {"id": "", "title": "a"})
    assert doc_count(db_app) == 0


def test_validation_error_is_a_value_error_and_a_tidal_error(db_app: tidal.App) -> None:
    with pytest.raises(ValueError):
        db_app.insert(Doc, {"views": 1})
    with pytest.raises(tidal.TidalError):
        db_app.insert(Doc, {"views": 1})


def test_enum_and_vector_values_are_coerced(db_app: tidal.App) -> None:
    stored = db_app.insert(Everything, good_everything(color="green", embedding=(1, 2)))
    fetched = db_app.get(Everything, stored.id)
    assert fetched is not None and fetched.color is Color.GREEN
    assert fetched.embedding.dtype == np.float32 and fetched.embedding.tolist() == [1.0, 2.0]
