"""Relations: typed tables of application data (documents, queries, feedback)
stored in SQL, whose changes can trigger update ops."""

from __future__ import annotations

from .database import Database
from .record import Record, Vector, relation_name
from .rows import Rows

__all__ = ["Database", "Record", "Rows", "Vector", "relation_name"]
