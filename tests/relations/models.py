"""Record classes shared by the relations tests."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

import tidal


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Doc(tidal.Record):
    title: str
    views: int = 0
    score: float = 0.0
    public: bool = False
    tag: str | None = None


class Everything(tidal.Record):
    """One field of every supported kind."""

    text: str
    count: int
    ratio: float
    flag: bool
    when: datetime
    day: date
    color: Color
    level: Level
    tags: list[str]
    meta: dict[str, Any]
    blob: bytes
    embedding: tidal.Vector
