"""Mapping Record fields to SQL columns and values both ways."""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python
from sqlalchemy.dialects import postgresql

from ..exceptions import SchemaError
from .record import Record, type_name


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Datetimes stored as UTC. SQLite keeps no time zone, so aware values are
    converted to UTC on the way in and come back aware (UTC); naive values are
    taken to be UTC already."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


@dataclass(frozen=True)
class Column:
    """How one field is stored."""

    name: str
    sql_type: sa.types.TypeEngine[Any]
    nullable: bool
    required: bool
    to_db: Callable[[Any], Any]
    kind: str  # short name of the SQL kind, compared on schema changes
    accepts_none: bool  # the field's type allows None
    field: FieldInfo

    @property
    def fills_null(self) -> bool:
        """A stored NULL reads back as the field's default: the column was
        added after rows were stored, or by an older version of the class."""
        return not self.accepts_none and not self.required

    def default_db_value(self) -> Any:
        """The field's default as a column value (None when it has none)."""
        if self.required:
            return None
        value = self.field.get_default(call_default_factory=True, validated_data={})
        if value is None:
            return None
        return to_jsonable_python(value) if self.kind == "json" else self.to_db(value)


def _identity(value: Any) -> Any:
    return value


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _vector_bytes(value: Any) -> Any:
    return None if value is None else np.asarray(value, dtype=np.float32).tobytes()


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The annotation without Annotated / Optional, and whether None is allowed."""
    nullable = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) < len(typing.get_args(annotation)):
                nullable = True
            if len(args) == 1:
                annotation = args[0]
                continue
            return args, nullable  # a union of several types: stored as JSON
        return annotation, nullable


def column_for(name: str, field: FieldInfo) -> Column:
    """The column a field maps to."""
    annotation, accepts_none = _unwrap(field.annotation)
    required = field.is_required()
    nullable = accepts_none or not required
    to_db: Callable[[Any], Any] = _identity
    if annotation is np.ndarray:
        sql_type: sa.types.TypeEngine[Any] = sa.LargeBinary()
        to_db, kind = _vector_bytes, "vector"
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = {type(m.value) for m in annotation}
        sql_type = sa.BigInteger() if values == {int} else sa.Text()
        to_db, kind = _enum_value, "int" if values == {int} else "text"
    elif annotation is bool:
        sql_type, kind = sa.Boolean(), "bool"
    elif annotation is int:
        sql_type, kind = sa.BigInteger(), "int"
    elif annotation is float:
        sql_type, kind = sa.Double(), "float"
    elif annotation is str:
        sql_type, kind = sa.Text(), "text"
    elif annotation is bytes:
        sql_type, kind = sa.LargeBinary(), "bytes"
    elif annotation is datetime:
        sql_type, kind = UTCDateTime(), "datetime"
    elif annotation is date:
        sql_type, kind = sa.Date(), "date"
    elif typing.get_origin(annotation) is typing.Literal:
        literal_types = {type(a) for a in typing.get_args(annotation)}
        sql_type, kind = (sa.BigInteger(), "int") if literal_types == {int} else (sa.Text(), "text")
    else:  # lists, dicts, tuples, sets, nested models, unions, Any: JSON
        sql_type, kind = JSONType, "json"
    return Column(name, sql_type, nullable, required, to_db, kind, accepts_none, field)


def columns_for(cls: type[Record]) -> list[Column]:
    """Every column of a Record class, system fields first."""
    return [column_for(name, field) for name, field in cls.model_fields.items()]


def table_for(cls: type[Record], metadata: sa.MetaData) -> sa.Table:
    """The SQLAlchemy table of a Record class."""
    cols = []
    for col in columns_for(cls):
        if col.name == "id":
            cols.append(sa.Column("id", sa.String(255), primary_key=True))
        else:
            cols.append(sa.Column(col.name, col.sql_type, nullable=col.nullable))
    return sa.Table(cls.relation(), metadata, *cols)


def to_row(record: Record, columns: list[Column]) -> dict[str, Any]:
    """A record as column values."""
    json_dump: dict[str, Any] | None = None
    row: dict[str, Any] = {}
    values = record.__dict__
    for col in columns:
        value = values[col.name]
        if col.kind == "json" and value is not None:
            # JSON columns get pydantic's JSON form, so that dates, enums and
            # nested models inside lists and dicts survive the round trip.
            if json_dump is None:
                json_dump = record.model_dump(mode="json")
            value = json_dump[col.name]
        row[col.name] = col.to_db(value)
    return row


def kind_of_db_type(sql_type: Any) -> str:
    """The short kind of a reflected column type, to compare with a field."""
    if isinstance(sql_type, sa.Boolean):
        return "bool"
    if isinstance(sql_type, sa.Integer):
        return "int"
    if isinstance(sql_type, sa.Float | sa.Numeric):
        return "float"
    if isinstance(sql_type, sa.LargeBinary | sa.types._Binary):
        return "bytes"
    if isinstance(sql_type, sa.DateTime):
        return "datetime"
    if isinstance(sql_type, sa.Date):
        return "date"
    if isinstance(sql_type, sa.JSON):
        return "json"
    if isinstance(sql_type, sa.String | sa.Text):
        return "text"
    name = type(sql_type).__name__.lower()
    if "json" in name:
        return "json"
    return name


COMPATIBLE = {("vector", "bytes"), ("bytes", "vector")}


@dataclass
class Evolution:
    """What an existing table needs to fit a Record class."""

    add: list[Column]
    """New fields: columns to add (filled with the field's default)."""
    check_filled: list[Column]
    """Required fields whose stored column allows NULL: no row may lack a value."""
    relax: list[str]
    """NOT NULL columns the class may leave empty (removed or now optional fields)."""


def check_compatible(cls: type[Record], existing: dict[str, tuple[str, bool]], has_rows: bool) -> Evolution:
    """How to adapt an existing table (``existing``: column name -> (kind,
    nullable)) to ``cls``, or SchemaError saying what is incompatible and
    what to do."""
    relation = cls.relation()
    plan = Evolution([], [], [])
    columns = columns_for(cls)
    for col in columns:
        if col.name not in existing:
            if col.required and has_rows:
                raise SchemaError(
                    f"relation {relation!r}: new field {col.name!r} of {cls.__name__} is required but the table "
                    f"already has rows; give it a default (or make it Optional) so existing rows can be read, "
                    f"or migrate the table"
                )
            plan.add.append(col)
            continue
        kind, nullable = existing[col.name]
        if kind != col.kind and (col.kind, kind) not in COMPATIBLE:
            raise SchemaError(
                f"relation {relation!r}: field {col.name!r} of {cls.__name__} is now "
                f"{type_name(col.field.annotation)} (a {col.kind} column) but the stored column is {kind}; "
                f"keep the old type, add a new field instead, or migrate the table "
                f"(e.g. create a new relation and backfill it)"
            )
        if nullable and col.required and not col.accepts_none and col.name != "id":
            plan.check_filled.append(col)
        if not nullable and col.accepts_none:
            plan.relax.append(col.name)
    names = {c.name for c in columns}
    plan.relax += [name for name, (_kind, nullable) in existing.items() if not nullable and name not in names]
    return plan
