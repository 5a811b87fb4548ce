"""Retrieval kept fresh: an incremental index over a relation, and
text-to-SQL over the app's relations.

::

    from tidal import rag

    sql = rag.TextToSQL(app, llm, tables=[Sale, Product, Store])
    answer = sql.ask("How many units of Fruity Fedora were sold in the last 7 days?")
    answer.sql, answer.rows, answer.run_id     # read-only by construction
    answer.correct("SELECT ...")               # a correction becomes an example

See docs/rag.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sql import SQLAnswer, SQLExample, TextToSQL
    from .sql_errors import SQLAnswerError, SQLExecutionError, SQLTimeoutError, UnsafeSQLError
    from .sql_guard import Checked, check

# Names load their module on first use (sqlglot and the relations cost
# time to import), as tidal.models does.
_MODULES = {
    "SQLAnswer": ".sql",
    "SQLExample": ".sql",
    "TextToSQL": ".sql",
    "SQLAnswerError": ".sql_errors",
    "SQLExecutionError": ".sql_errors",
    "SQLTimeoutError": ".sql_errors",
    "UnsafeSQLError": ".sql_errors",
    "Checked": ".sql_guard",
    "check": ".sql_guard",
}


def __getattr__(name: str) -> object:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'tidal.rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


__all__ = [
    # Text-to-SQL
    "SQLAnswer",
    "SQLExample",
    "TextToSQL",
    "Checked",
    "check",
    # Errors
    "SQLAnswerError",
    "SQLExecutionError",
    "SQLTimeoutError",
    "UnsafeSQLError",
]
