"""The context and instructions ``rag.answer`` gives the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .hits import Hit

SYSTEM = (
    "Answer the question using only the numbered sources below. Cite the sources you use as [1], [2], ... "
    "If the sources do not contain the answer, say that you do not know."
)


def messages(question: str, hits: Sequence[Hit]) -> list[dict[str, Any]]:
    sources = "\n\n".join(f"[{i}] ({h.doc_id}, chunk {h.chunk_no})\n{h.text}" for i, h in enumerate(hits, start=1))
    return [
        {"role": "system", "content": f"{SYSTEM}\n\nSources:\n\n{sources}"},
        {"role": "user", "content": question},
    ]
