"""Relations: typed tables of application data (documents, queries, feedback)
stored in SQL, whose changes can trigger update ops.

The package loads its modules on first use of a name (SQLAlchemy, pydantic
and numpy cost ~300 ms), so that the engine can hold ``tidal.relations`` and
``import tidal`` stays quick for apps without relations: one table below,
the same mechanism as ``tidal.stores.SCHEMES`` and ``tidal._LAZY``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy

if TYPE_CHECKING:
    from .builtin import ExperimentPin, Feedback, GuardViolation, ModelCall, Run
    from .database import Database
    from .record import Record, Vector, relation_name
    from .rows import Rows

_MODULES = {
    "Database": ".database",
    "Record": ".record",
    "Vector": ".record",
    "relation_name": ".record",
    "Rows": ".rows",
    "Run": ".builtin",
    "Feedback": ".builtin",
    "ModelCall": ".builtin",
    "GuardViolation": ".builtin",
    "ExperimentPin": ".builtin",
}


__getattr__ = lazy.attributes(__name__, _MODULES, globals())


def load() -> None:
    """Load every module of the package now (before a fork, so that children
    do not each pay for it)."""
    for name in _MODULES:
        __getattr__(name)


__all__ = [
    "Database",
    "ExperimentPin",
    "Feedback",
    "GuardViolation",
    "ModelCall",
    "Record",
    "Rows",
    "Run",
    "Vector",
    "load",
    "relation_name",
]
