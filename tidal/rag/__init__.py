"""Retrieval kept fresh: an incremental hybrid index over a relation
(:class:`Index`), answers with citations (:func:`answer`), and text-to-SQL
over the app's relations (:class:`TextToSQL`). See docs/rag.md.

::

    from tidal import models, rag

    docs = rag.Index(app, "docs", source=Doc, text=lambda d: d.body,
                     embedder=models.embedder("local://minilm"))
    hits = docs.search("what does nonlocal do?", k=5)
    docs.audit(repair=True)

    sql = rag.TextToSQL(app, llm, tables=[Sale, Product, Store])
    answer = sql.ask("How many units of Fruity Fedora were sold in the last 7 days?")
    answer.sql, answer.rows, answer.run_id     # read-only by construction
    answer.correct("SELECT ...")               # a correction becomes an example
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy

# The index's names are imported here: ``answer`` is both a module and the
# function, and importing the function last keeps the name the function.
from .answer import answer
from .audit import AuditReport
from .chunking import Chunking
from .hits import Hit, Hits
from .index import Answer, Citation, Index, IndexStats, indexes
from .lineage import Chunk, IndexRow

if TYPE_CHECKING:
    from .sql import SQLAnswer, SQLExample, TextToSQL
    from .sql_errors import SQLAnswerError, SQLExecutionError, SQLTimeoutError, UnsafeSQLError
    from .sql_guard import Checked, check

# Text-to-SQL's names load their module on first use (sqlglot costs time to
# import), as tidal.models does.
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


__getattr__ = lazy.attributes(__name__, _MODULES, globals())

__all__ = [
    # The index
    "Answer",
    "AuditReport",
    "Chunk",
    "Chunking",
    "Citation",
    "Hit",
    "Hits",
    "Index",
    "IndexRow",
    "IndexStats",
    "answer",
    "indexes",
    # Text-to-SQL
    "Checked",
    "SQLAnswer",
    "SQLExample",
    "TextToSQL",
    "check",
    # Errors
    "SQLAnswerError",
    "SQLExecutionError",
    "SQLTimeoutError",
    "UnsafeSQLError",
]
