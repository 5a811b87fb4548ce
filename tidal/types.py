"""Names for hints that the lower layers share, so that none of them has to
import a higher layer's class just to name it.

A record class is a :class:`tidal.Record` subclass; the core (which must not
load pydantic models, numpy or SQLAlchemy on import) knows it by the marker
that ``Record`` sets rather than by importing it.
"""

from __future__ import annotations

from typing import Any, TypeAlias

RecordClass: TypeAlias = type[Any]
"""A :class:`tidal.Record` subclass (a relation)."""

RECORD_MARKER = "__tidal_record__"
"""Class attribute that :class:`tidal.Record` sets to True."""


def is_record_class(cls: object) -> bool:
    """Whether ``cls`` is a :class:`tidal.Record` subclass."""
    return isinstance(cls, type) and getattr(cls, RECORD_MARKER, False) is True
