"""Read-only SQL over the app's relations (the runs log and feedback
included), with bound parameters only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .common import AsDict

if TYPE_CHECKING:
    from ..app import App


@dataclass(frozen=True)
class SqlResult(AsDict):
    """Rows of a read-only query; values are JSON-ready (others as text)."""

    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def sql(app: App, query: str, params: dict[str, Any] | None = None) -> SqlResult:
    """Run read-only SQL with bound parameters over the app's relations
    (``runs`` and ``feedback`` included)."""
    got = app.sql(query, params or {})
    return SqlResult(list(got.columns), [[_jsonable(v) for v in row.values()] for row in got])


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value
