"""A process's copy of one generation of an index, kept in step with the
chunk table: before each search it reads only the rows written since the
last ``seq`` it applied (one small query when nothing changed)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .lexical import Lexical
from .lineage import Lineage
from .vectors import ANN_THRESHOLD, Vectors

RRF_K = 60
"""Reciprocal rank fusion's constant: a hit's score is the sum over the
lexical and vector lists of 1 / (RRF_K + rank)."""


@dataclass(frozen=True)
class Slot:
    key: str
    doc_id: str
    chunk_no: int
    doc_version: str
    text: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Candidate:
    slot: Slot
    score: float
    lexical: float | None
    lexical_rank: int | None
    vector: float | None
    vector_rank: int | None


class Mirror:
    """Slots of live chunks with their text (FTS5) and vectors."""

    def __init__(self, lineage: Lineage, generation: int, ann_threshold: int = ANN_THRESHOLD) -> None:
        self.lineage = lineage
        self.generation = generation
        self.seq = 0
        self.slots: list[Slot | None] = []
        self.by_key: dict[str, int] = {}
        self.free: list[int] = []
        self.lexical = Lexical()
        self.vectors = Vectors(ann_threshold)
        self.lock = threading.RLock()

    def __len__(self) -> int:
        return len(self.by_key)

    def catch_up(self, head_seq: int) -> int:
        """Apply every row written after the last one applied; ``head_seq``
        is the index's counter read before (every row at or below it has
        committed). Returns the rows applied."""
        applied = 0
        with self.lock:
            if head_seq <= self.seq:
                return 0
            while True:
                rows = self.lineage.changes(self.generation, self.seq)
                if not rows:
                    break
                texts: list[tuple[int, str]] = []
                for key, doc_id, chunk_no, version, text, vector, fields, seq, live in rows:
                    old = self.by_key.pop(key, None)
                    if old is not None:
                        gone = self.slots[old]
                        self.lexical.remove(old, gone.text if gone is not None else "")
                        self.vectors.remove(old)
                        self.slots[old] = None
                        self.free.append(old)
                    if live and vector is not None:
                        slot = self.free.pop() if self.free else len(self.slots)
                        if slot == len(self.slots):
                            self.slots.append(None)
                        if isinstance(fields, str):
                            fields = json.loads(fields)
                        self.slots[slot] = Slot(key, doc_id, int(chunk_no), version, text, dict(fields or {}))
                        self.by_key[key] = slot
                        self.vectors.put(slot, np.frombuffer(vector, dtype=np.float32))
                        texts.append((slot, text))
                    self.seq = max(self.seq, int(seq))
                    applied += 1
                if texts:
                    self.lexical.put_many(texts)
            self.seq = max(self.seq, head_seq)
        return applied

    def _allowed(self, where: dict[str, Any]) -> np.ndarray:
        allowed = np.zeros(len(self.slots), dtype=bool)
        for i, s in enumerate(self.slots):
            if s is not None and all(s.fields.get(k) == v for k, v in where.items()):
                allowed[i] = True
        return allowed

    def search(self, text: str, vector: np.ndarray | None, n: int, where: dict[str, Any] | None) -> list[Candidate]:
        """The best ``n`` candidates by reciprocal rank fusion of BM25 and
        cosine, each list cut at ``n``; ``where`` keeps chunks whose source
        fields equal its values."""
        with self.lock:
            allowed = self._allowed(where) if where else None
            fetch = n if allowed is None else n * 20
            lexical = self.lexical.search(text, fetch)
            if allowed is not None:
                lexical = [(s, v) for s, v in lexical if s < len(allowed) and allowed[s]]
            lexical = lexical[:n]
            dense = self.vectors.search(vector, n, allowed) if vector is not None else []
            fused: dict[int, list[Any]] = {}
            for rank, (slot, score) in enumerate(lexical, start=1):
                fused[slot] = [1.0 / (RRF_K + rank), score, rank, None, None]
            for rank, (slot, score) in enumerate(dense, start=1):
                entry = fused.setdefault(slot, [0.0, None, None, None, None])
                entry[0] += 1.0 / (RRF_K + rank)
                entry[3], entry[4] = score, rank
            out = []
            for slot, (fused_score, lex, lex_rank, vec, vec_rank) in fused.items():
                found = self.slots[slot]
                if found is not None:
                    out.append(Candidate(found, fused_score, lex, lex_rank, vec, vec_rank))
        out.sort(key=lambda c: -c.score)
        return out

    def close(self) -> None:
        self.lexical.close()
