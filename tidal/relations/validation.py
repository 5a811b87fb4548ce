"""Checking records before they are written, and explaining refusals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from ..exceptions import RecordValidationError, SchemaError
from .record import Record, type_name
from .schema import Column, columns_for

if TYPE_CHECKING:
    from .database import Relation

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
"""The range of an integer column (BIGINT on PostgreSQL, INTEGER on SQLite)."""

JSON_MAX_DEPTH = 200
"""Deepest nesting of lists and dicts a JSON field may hold (the outbox's
JSON encoder stops at 254 levels, the record and its envelope included)."""

_columns: dict[type[Record], list[Column]] = {}

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
            record = model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                errors.append((index, ".".join(str(p) for p in err["loc"]), problem(model, err)))
            continue
        found = unstorable(record)
        if found:
            errors.extend((index, field, message) for field, message in found)
        else:
            records.append(record)
    if errors:
        first = errors[0]
        where = f"record {first[0]}" + (f", field {first[1]!r}" if first[1] else "")
        raise RecordValidationError(
            f"{len(errors)} problem(s) in the batch, nothing was written; {where}: {first[2]}", errors
        )
    return records


def refused(rel: Relation, index: int, record_id: str, exc: sa.exc.IntegrityError) -> Exception:
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


def _text_problem(value: str) -> str | None:
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"expected text encodable as UTF-8: a lone surrogate {value[exc.start]!r} at position {exc.start}"
    return None


def _int_problem(value: int) -> str | None:
    if INT_MIN <= value <= INT_MAX:
        return None
    return f"expected an integer from -2**63 to 2**63-1 (64 bits), got one of {value.bit_length()} bits"


def json_problem(value: Any, max_depth: int = JSON_MAX_DEPTH) -> tuple[str, str] | None:
    """Where in JSON data ``value`` is something no store can hold (a dotted
    path, empty for the top), and what; None when there is nothing."""
    path: list[str] = []
    bad = _json_problem(value, path, 0, max_depth)
    return None if bad is None else (".".join(path), bad)


def _json_problem(value: Any, path: list[str], depth: int = 0, max_depth: int = JSON_MAX_DEPTH) -> str | None:
    """The first value in JSON data that a database cannot store; ``path``
    gets the keys leading to it."""
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    if isinstance(value, int):
        return _int_problem(value)  # the outbox (orjson) and the API answer 64-bit integers only
    if depth >= max_depth:
        return f"expected JSON nested at most {max_depth} levels deep"
    if isinstance(value, dict):
        for key, item in value.items():
            bad = _text_problem(key) if isinstance(key, str) else None
            if bad is not None:
                path.append(repr(key))
                return f"a key: {bad}"
            bad = _json_problem(item, path, depth + 1, max_depth)
            if bad is not None:
                path.insert(0, str(key))
                return bad
        return None
    if isinstance(value, BaseModel):
        return _json_problem(value.__dict__, path, depth, max_depth)
    if isinstance(value, list | tuple | set | frozenset):
        for position, item in enumerate(value):
            bad = _json_problem(item, path, depth + 1, max_depth)
            if bad is not None:
                path.insert(0, str(position))
                return bad
    return None


def storable_problem(column: Column, value: Any) -> tuple[str, str] | None:
    """Why ``value`` cannot be stored in ``column`` (a dotted path below the
    field, and the problem), or None when it can: integers out of the
    64-bit range of an integer column, text that is not UTF-8 (a lone
    surrogate), JSON too deep or with such values inside."""
    if value is None:
        return None
    if column.kind == "text" or column.name == "id":
        bad = _text_problem(value) if isinstance(value, str) else None
    elif column.kind == "int":
        value = column.to_db(value)
        bad = _int_problem(value) if isinstance(value, int) and not isinstance(value, bool) else None
    elif column.kind == "json":
        return json_problem(value)
    else:
        bad = None
    return None if bad is None else ("", bad)


def unstorable(record: Record) -> list[tuple[str, str]]:
    """(field, problem) for each value of ``record`` a database cannot store."""
    cls = type(record)
    columns = _columns.get(cls)
    if columns is None:
        columns = _columns[cls] = columns_for(cls)
    values = record.__dict__
    found = []
    for column in columns:
        bad = storable_problem(column, values.get(column.name))
        if bad is not None:
            where, message = bad
            found.append((f"{column.name}.{where}" if where else column.name, message))
    return found


def check_where(cls: type[Record], columns: list[Column], where: Mapping[str, Any]) -> None:
    """RecordValidationError naming the field of a query filter whose value
    no record could hold (out of range, not UTF-8)."""
    errors = []
    by_name = {c.name: c for c in columns}
    for field, value in where.items():
        column = by_name.get(field)
        bad = storable_problem(column, value) if column is not None else None
        if bad is not None:
            errors.append((0, ".".join(p for p in (field, bad[0]) if p), bad[1]))
    if errors:
        raise RecordValidationError(
            f"relation {cls.relation()!r}: filter on field {errors[0][1]!r}: {errors[0][2]}; nothing was read",
            errors,
        )


def check_ids(cls: type[Record], ids: Iterable[Any]) -> None:
    """RecordValidationError for record ids that are not storable text."""
    for index, record_id in enumerate(ids):
        bad = _text_problem(record_id) if isinstance(record_id, str) else None
        if bad is not None:
            raise RecordValidationError(
                f"relation {cls.relation()!r}: id {index}: {bad}; nothing was changed", [(index, "id", bad)]
            )
