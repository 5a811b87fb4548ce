"""The in-process tier of the serve-result cache.

Entries are keyed by (component, instance, flow, canonical props, state
version) in the default mode, so an update makes old entries unreachable
instead of stale; in ``ttl`` mode the version is left out of the key
(Motion's behaviour). An OrderedDict: a hit must cost well under a microsecond,
and ``popitem(last=False)`` evicts the oldest entry in O(1) (a plain dict's
``next(iter(d))`` slows down as deleted slots pile up at its front).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

CacheKey = tuple[str, str, str, bytes, int]


class LocalCache:
    """A bounded dict of serve results with per-entry expiry."""

    __slots__ = ("_entries", "_lock", "_max", "hits", "misses")

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[CacheKey, tuple[float, Any, dict[str, Any]]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> tuple[Any, dict[str, Any]] | None:
        """(result, props after serve) if cached and not expired."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.time():
            self.misses += 1
            return None
        self.hits += 1
        return entry[1], entry[2]

    def set(self, key: CacheKey, result: Any, props: dict[str, Any], ttl: float) -> None:
        entries = self._entries
        entries[key] = (time.time() + ttl, result, props)
        if len(entries) > self._max:
            with self._lock:  # eviction only; concurrent gets stay lock-free
                while len(entries) > self._max:
                    try:
                        entries.popitem(last=False)
                    except KeyError:
                        break

    def drop_instance(self, component: str, instance: str) -> None:
        """Forget every entry of one instance."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == component and k[1] == instance]:
                self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def after_fork_in_child(self) -> None:
        """A parent's thread may have held the lock at the fork."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)
