"""Retrieval kept fresh: an incremental hybrid index over a relation
(:class:`Index`), answers with citations (:func:`answer`). See docs/rag.md.

::

    from tidal import models, rag

    docs = rag.Index(app, "docs", source=Doc, text=lambda d: d.body,
                     embedder=models.embedder("local://minilm"))
    hits = docs.search("what does nonlocal do?", k=5)
    docs.audit(repair=True)
"""

from __future__ import annotations

from .answer import answer
from .audit import AuditReport
from .chunking import Chunking
from .hits import Hit, Hits
from .index import Answer, Citation, Index, IndexStats, indexes
from .lineage import Chunk, IndexRow

__all__ = [
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
]
