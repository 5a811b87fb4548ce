"""The errors of text-to-SQL (:class:`tidal.rag.TextToSQL`).

::

    TidalError
    └── SQLAnswerError              a question got no rows
        ├── UnsafeSQLError          the guard refused the SQL; nothing ran
        ├── SQLTimeoutError         the query ran past ``timeout_s`` and was stopped
        └── SQLExecutionError       the database refused the query (a column that does not exist, ...)

Each carries the SQL it is about (``sql``) and, when it happened inside
``ask``, the id of the run that recorded it (``run_id``), so that feedback
with a corrected query can name the run.
"""

from __future__ import annotations

from ..exceptions import TidalError

SQL_IN_MESSAGE = 500
"""The most characters of the SQL quoted in an error message (the runs log
keeps the message, so the refused SQL is in the run's ``error``)."""


class SQLAnswerError(TidalError):
    """Raised when a question could not be answered with rows."""

    def __init__(self, reason: str, sql: str = "", run_id: str | None = None) -> None:
        self.reason = reason
        self.sql = sql
        self.run_id = run_id
        quoted = sql if len(sql) <= SQL_IN_MESSAGE else sql[:SQL_IN_MESSAGE] + "…"
        super().__init__(f"{reason}\nSQL: {quoted}" if sql else reason)


class UnsafeSQLError(SQLAnswerError):
    """Raised when SQL is not provably a read of the allowed tables: not one
    SELECT, a write or a schema change hidden anywhere in it, a table outside
    the allowed list, a function outside the safe list, a parameter, or text
    that does not parse. Nothing was run."""


class SQLTimeoutError(SQLAnswerError):
    """Raised when a checked query ran past its time limit and was stopped."""


class SQLExecutionError(SQLAnswerError):
    """Raised when the database refused or failed a checked query (an unknown
    column, a type error)."""
