"""Record: the base class of a relation's rows (a pydantic model)."""

from __future__ import annotations

import functools
import re
import types
import typing
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema


def _to_vector(value: Any) -> np.ndarray:
    if isinstance(value, bytes | bytearray | memoryview):
        array = np.frombuffer(value, dtype=np.float32).copy()
    else:
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"expected a vector of numbers, got {type(value).__name__}") from exc
    if array.ndim != 1:
        raise ValueError(f"expected a 1-dimensional vector, got shape {array.shape}")
    return array


Vector = Annotated[
    np.ndarray,
    PlainValidator(_to_vector),
    PlainSerializer(lambda a: a.tolist(), return_type=list, when_used="json"),
    WithJsonSchema({"type": "array", "items": {"type": "number"}}),
]
"""A 1-d float32 numpy vector (an embedding); stored as raw bytes."""


@functools.cache
def relation_name(cls: type) -> str:
    """``DocChunk`` -> ``doc_chunk``: the table name of a Record class
    (cached: it is asked several times on every write)."""
    explicit = cls.__dict__.get("__relation__")
    if explicit:
        return str(explicit)
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", cls.__name__)
    return re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", name).lower()


def type_name(annotation: Any) -> str:
    """A field's type as written in a class body (``int``, ``list[str]``,
    ``datetime | None``, ``Vector``), for error messages."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if annotation is np.ndarray:
        return "Vector"
    if annotation is type(None):
        return "None"
    if annotation is Ellipsis:
        return "..."
    if annotation is Any:
        return "Any"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(type_name(a) for a in args)}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return re.sub(r"\btyping\.", "", repr(annotation))


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


SYSTEM_FIELDS = ("id", "created_at", "updated_at")


class Record(BaseModel):
    """A row of a relation. Subclass it with typed fields::

        class Doc(tidal.Record):
            title: str
            body: str
            tags: list[str] = []

    Every record has ``id`` (a string, generated unless given),
    ``created_at`` and ``updated_at`` (set when stored). The table is the
    class name in snake_case (``Doc`` -> ``doc``) unless the class sets
    ``__relation__``.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        arbitrary_types_allowed=True,
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )

    id: str = Field(default_factory=new_id, min_length=1, max_length=255)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    __relation__: ClassVar[str] = ""
    __tidal_record__: ClassVar[bool] = True  # how the core tells a record class (tidal.types)

    @classmethod
    def relation(cls) -> str:
        """The table name."""
        return relation_name(cls)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseModel) or type(other) is not type(self):
            return NotImplemented
        mine, theirs = self.__dict__, other.__dict__
        if mine.keys() != theirs.keys():
            return False
        for key, value in mine.items():
            other_value = theirs[key]
            if isinstance(value, np.ndarray) or isinstance(other_value, np.ndarray):
                if not np.array_equal(value, other_value):
                    return False
            elif value != other_value:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]
