"""What a search returns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hit:
    """One chunk found: its document, the document's version it was made
    from, its number in the document, its text, and its fused score with the
    parts it came from (BM25 score and rank, cosine and rank; None where the
    chunk was not among that side's candidates), and ``ranked``, the
    learned ranker's score the hits are ordered by (docs/rag.md)."""

    doc_id: str
    doc_version: str
    chunk_no: int
    text: str
    score: float
    lexical: float | None = None
    lexical_rank: int | None = None
    vector: float | None = None
    vector_rank: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    ranked: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Hits:
    """The hits of one search, best first, and the run it was
    (``app.feedback(hits.run_id, ...)``)."""

    query: str
    hits: list[Hit]
    run_id: str | None = None
    generation: int = 0

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, i: int) -> Hit:
        return self.hits[i]

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "run_id": self.run_id, "generation": self.generation,
                "hits": [h.as_dict() for h in self.hits]}  # fmt: skip
