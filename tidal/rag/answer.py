"""``rag.answer``: retrieval, then the model, with citations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models import Model
    from .index import Answer, Index


def answer(llm: Model, index: Index, question: str, k: int = 5, **params: Any) -> Answer:
    """Answer ``question`` from ``index``'s ``k`` best chunks: the model
    (called through ``tidal.models``, so the call is a row of
    ``model_calls``) is told to cite them as [1], [2], ...; the answer
    lists them as citations (document, version, chunk). The whole is one run
    of flow ``answer`` of the index's component: its result names the
    chunks and versions used (``tidal runs show ID``)::

        a = rag.answer(llm, docs, "What does nonlocal do?")
        a.text, a.citations[0].doc_id, a.run_id
    """
    return index.answer(llm, question, k, **params)
