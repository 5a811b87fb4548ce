"""Checking records before they are written, and explaining refusals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from pydantic import ValidationError

from ..exceptions import RecordValidationError, SchemaError
from .record import Record, type_name

if TYPE_CHECKING:
    from .database import _Relation

R = TypeVar("R", bound=Record)


def validate(items: Iterable[Record | Mapping[str, Any]], cls: type[R] | None = None) -> list[Record]:
    """Records from instances or dicts (dicts need ``cls``); all problems
    of all items reported in one RecordValidationError.

    Record instances are validated again: ``model_copy(update=...)`` and
    ``model_construct`` skip pydantic's validation, and a value of the
    wrong type must not reach the table."""
    records: list[Record] = []
    errors: list[tuple[int, str, str]] = []
    for index, item in enumerate(items):
        if isinstance(item, Record):
            if cls is not None and not isinstance(item, cls):
                errors.append((index, "", f"expected a {cls.__name__}, got {type(item).__name__}"))
                continue
            model: type[Record] = type(item)
            data: Any = {**item.__dict__, **(item.__pydantic_extra__ or {})}
        elif cls is None:
            raise TypeError(f"item {index} is a {type(item).__name__}; pass relation=RecordClass to insert dicts")
        else:
            model, data = cls, item
        try:
            records.append(model.model_validate(data))
        except ValidationError as exc:
            for err in exc.errors():
                errors.append((index, ".".join(str(p) for p in err["loc"]), problem(model, err)))
    if errors:
        first = errors[0]
        where = f"record {first[0]}" + (f", field {first[1]!r}" if first[1] else "")
        raise RecordValidationError(
            f"{len(errors)} problem(s) in the batch, nothing was written; {where}: {first[2]}", errors
        )
    return records


def refused(rel: _Relation, index: int, record_id: str, exc: sa.exc.IntegrityError) -> Exception:
    """The error for a row the table refused (the transaction is rolled back)."""
    relation = rel.cls.relation()
    if is_duplicate_key(exc):
        return RecordValidationError(
            f"relation {relation!r}: a record with id {record_id!r} already exists; "
            "nothing was written (use upsert or update to change it)",
            [(index, "id", "duplicate id")],
        )
    if rel.stuck_not_null:
        return SchemaError(
            f"relation {relation!r}: the stored table requires a value in column(s) {rel.stuck_not_null} "
            f"(an earlier version of {rel.cls.__name__} required them) and SQLite cannot relax that; give the "
            f"field(s) a value or a default again, or migrate the table; nothing was written ({exc.orig})"
        )
    return RecordValidationError(
        f"relation {relation!r}: record {index} (id {record_id!r}) was refused by the table, nothing was written: "
        f"{exc.orig}",
        [(index, "", str(exc.orig))],
    )


def is_read_only_violation(exc: sa.exc.DBAPIError) -> bool:
    """Whether the database refused a write because the connection is read-only."""
    if getattr(exc.orig, "sqlstate", None) == "25006":  # PostgreSQL read_only_sql_transaction
        return True
    return "readonly database" in str(exc.orig)


def is_duplicate_key(exc: sa.exc.IntegrityError) -> bool:
    """Whether the database refused a row because its primary key is taken."""
    if getattr(exc.orig, "sqlstate", None) == "23505":  # PostgreSQL unique_violation
        return True
    return "UNIQUE constraint failed" in str(exc.orig) or "PRIMARY KEY" in str(exc.orig)


def problem(model: type[Record], err: Any) -> str:
    """One pydantic error as text: the expected type, what is wrong, the input."""
    loc = err["loc"]
    field = model.model_fields.get(str(loc[0])) if loc else None
    expected = f"expected {type_name(field.annotation)}: " if field is not None else ""
    got = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.60})"
    return f"{expected}{err['msg']}{got}"
