"""Vectors by slot: exact search with numpy, and an HNSW graph (usearch) once
there are many.

Below ``ANN_THRESHOLD`` live vectors a query is one matrix-vector product
(measured: ~2 ms for 10k 384-d vectors on this machine). Above it, a usearch
graph is built on a background thread (searches stay exact meanwhile) and
then kept up to date with each change; its candidates are re-scored exactly.
Filtered searches always use the exact path, over the allowed slots.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

log = logging.getLogger("tidal.rag")

ANN_THRESHOLD = 20_000
"""Live vectors from which a usearch graph is built (if usearch is installed)."""


def _usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError:  # the brute-force path serves; pip install 'tidal[rag]' for the graph
        return None
    return Index


class Vectors:
    """A growable float32 matrix of unit rows, one per slot."""

    def __init__(self, ann_threshold: int = ANN_THRESHOLD) -> None:
        self.dim = 0
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.alive = np.zeros(0, dtype=bool)
        self.ann_threshold = ann_threshold
        self._ann: Any = None
        self._building = False
        self._dirty: set[int] | None = None  # slots changed while the graph is built
        self._lock = threading.Lock()

    def _grow(self, slot: int, dim: int) -> None:
        if self.dim == 0:
            self.dim = dim
            self.matrix = np.zeros((64, dim), dtype=np.float32)
            self.alive = np.zeros(64, dtype=bool)
        if dim != self.dim:
            raise ValueError(f"vector of {dim} dimensions in an index of {self.dim}")
        if slot >= len(self.alive):
            size = max(slot + 1, 2 * len(self.alive))
            matrix = np.zeros((size, self.dim), dtype=np.float32)
            matrix[: len(self.matrix)] = self.matrix
            alive = np.zeros(size, dtype=bool)
            alive[: len(self.alive)] = self.alive
            self.matrix, self.alive = matrix, alive

    def put(self, slot: int, vector: np.ndarray) -> None:
        self._grow(slot, len(vector))
        self.matrix[slot] = vector
        self.alive[slot] = True
        with self._lock:
            if self._dirty is not None:
                self._dirty.add(slot)
            elif self._ann is not None:
                if slot in self._ann:
                    self._ann.remove(slot)
                self._ann.add(slot, vector)
        self._maybe_build()

    def remove(self, slot: int) -> None:
        if slot < len(self.alive):
            self.alive[slot] = False
        with self._lock:
            if self._dirty is not None:
                self._dirty.add(slot)
            elif self._ann is not None and slot in self._ann:
                self._ann.remove(slot)

    @property
    def uses_graph(self) -> bool:
        return self._ann is not None and self._dirty is None

    def _maybe_build(self) -> None:
        if self._ann is not None or self._building or int(self.alive.sum()) < self.ann_threshold:
            return
        index_cls = _usearch()
        if index_cls is None:
            return
        self._building = True
        with self._lock:
            self._dirty = set()
        slots = np.flatnonzero(self.alive)
        data = self.matrix[slots].copy()
        threading.Thread(target=self._build, args=(index_cls, slots, data), name="tidal-rag-ann", daemon=True).start()

    def _build(self, index_cls: Any, slots: np.ndarray, data: np.ndarray) -> None:
        try:
            ann = index_cls(ndim=self.dim, metric="ip", dtype="f16", expansion_add=64)
            ann.add(slots, data)
            with self._lock:
                for slot in self._dirty or ():
                    if slot in ann:
                        ann.remove(slot)
                    if slot < len(self.alive) and self.alive[slot]:
                        ann.add(slot, self.matrix[slot])
                self._ann, self._dirty = ann, None
        except Exception:
            log.exception("building the vector graph failed; searches stay exact")
            with self._lock:
                self._dirty = None
        finally:
            self._building = False

    def search(self, query: np.ndarray, n: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The ``n`` best live slots by cosine (rows and query are unit
        vectors), with their scores; only ``allowed`` slots if given."""
        if self.dim == 0 or n <= 0:
            return []
        if allowed is None and self.uses_graph:
            with self._lock:
                found = self._ann.search(query, n * 2)
            slots = np.asarray(found.keys, dtype=np.int64)
            slots = slots[self.alive[slots]]
            scores = self.matrix[slots] @ query
        else:
            mask = self.alive if allowed is None else (self.alive[: len(allowed)] & allowed)
            slots = np.flatnonzero(mask)
            if len(slots) == 0:
                return []
            scores = self.matrix[slots] @ query if allowed is not None else (self.matrix @ query)[slots]
        if len(slots) > n:
            top = np.argpartition(-scores, n)[:n]
            slots, scores = slots[top], scores[top]
        order = np.argsort(-scores, kind="stable")
        return [(int(slots[i]), float(scores[i])) for i in order]
