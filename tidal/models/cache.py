"""Tidal's response caches for model calls.

* :class:`ResponseCache` — exact: a deterministic call (temperature 0, or a
  seed) with the same endpoint, model, messages and every setting gets the
  stored answer. Entries live in the app's store (``Store.cache_set``: shared
  by every process on SQLite or Redis), with a per-process LRU in front so
  that a hit costs microseconds. An entry is written only once a call has
  fully succeeded (a streamed one: once its last chunk came), in one store
  write, so a timed-out or broken call never leaves a partial entry.
* :class:`SemanticCache` — opt-in: a question close enough (cosine of the
  embeddings at or above ``threshold``) to one answered before, under the
  same model, settings and earlier messages, gets that answer; the match and
  its similarity are logged. Kept per process.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, Protocol

import numpy as np
import orjson

from ..lru import LRU

PREFIX = b"tidal.models\x00"
"""Store cache keys of model responses start with this."""

DEFAULT_TTL = 7 * 24 * 3600.0


def request_key(base_url: str, operation: str, body: dict[str, Any]) -> bytes:
    """The cache key of a request: a hash of the endpoint, the operation and
    the whole request body (model, messages, every setting)."""
    text = orjson.dumps([base_url, operation, body], option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return hashlib.blake2b(text, digest_size=20).digest()


class ResponseCache:
    """Exact cache of model responses (raw JSON bodies) in the app's store."""

    def __init__(self, *, ttl: float = DEFAULT_TTL, local_entries: int = 4096) -> None:
        if ttl <= 0:
            raise ValueError(f"cache ttl must be > 0 seconds, got {ttl!r}")
        self.ttl = ttl
        self._local: LRU[tuple[int, bytes], tuple[float, bytes]] = LRU(local_entries)
        self._lock = threading.Lock()

    def get(self, store: Any, key: bytes) -> bytes | None:
        """The cached body, or None. ``store`` None: this process's entries only."""
        scope = id(store)
        with self._lock:
            hit = self._local.get((scope, key))
        if hit is not None:
            if hit[0] > time.time():
                return hit[1]
            with self._lock:
                self._local.pop((scope, key))
        if store is None:
            return None
        raw: bytes | None = store.cache_get(PREFIX + key)
        if raw is not None:
            with self._lock:
                self._local.put((scope, key), (time.time() + self.ttl, raw))
        return raw

    def set(self, store: Any, key: bytes, body: bytes) -> None:
        """Cache a complete response body."""
        with self._lock:
            self._local.put((id(store), key), (time.time() + self.ttl, body))
        if store is not None:
            store.cache_set(PREFIX + key, body, self.ttl)

    def clear_local(self) -> None:
        """Forget this process's copies (the store's stay)."""
        with self._lock:
            self._local.clear()


class TextEmbedder(Protocol):
    """Anything that turns texts into rows of unit vectors."""

    def embed(self, texts: list[str]) -> Any: ...


class SemanticCache:
    """Answers to questions close enough to earlier ones (opt-in per call)."""

    def __init__(self, embedder: TextEmbedder, *, threshold: float = 0.95, max_entries: int = 10_000) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"semantic cache threshold must be in (0, 1], got {threshold!r}")
        if max_entries < 1:
            raise ValueError(f"semantic cache max_entries must be >= 1, got {max_entries!r}")
        self.embedder = embedder
        self.threshold = threshold
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._scopes: dict[bytes, tuple[list[np.ndarray], list[bytes], list[str]]] = {}
        self._size = 0

    def _vector(self, text: str) -> np.ndarray:
        vec = np.asarray(self.embedder.embed([text]), dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec

    def lookup(self, scope: bytes, text: str) -> tuple[bytes, float, str] | None:
        """(body, similarity, matched question) of the closest earlier
        question in ``scope`` at or above the threshold, else None."""
        with self._lock:
            entries = self._scopes.get(scope)
            if not entries:
                return None
            vectors, bodies, texts = entries[0][:], entries[1][:], entries[2][:]
        sims = np.stack(vectors) @ self._vector(text)
        best = int(np.argmax(sims))
        similarity = float(sims[best])
        if similarity < self.threshold:
            return None
        return bodies[best], similarity, texts[best]

    def add(self, scope: bytes, text: str, body: bytes) -> None:
        """Remember an answer (the oldest entries go past ``max_entries``)."""
        vec = self._vector(text)
        with self._lock:
            entries = self._scopes.setdefault(scope, ([], [], []))
            entries[0].append(vec)
            entries[1].append(body)
            entries[2].append(text)
            self._size += 1
            while self._size > self.max_entries:
                oldest = next(iter(self._scopes))
                victims = self._scopes[oldest]
                for part in victims:
                    del part[0]
                self._size -= 1
                if not victims[0]:
                    del self._scopes[oldest]

    def __len__(self) -> int:
        return self._size
