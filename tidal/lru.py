"""A small least-recently-used map, so that what a process keeps per instance
stays within a bound however many instances a long-running process meets:
the engine's snapshots, the Redis store's key names and cached versions.
At the bottom layer, so that the stores and the engine share it."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``limit`` items; putting one more drops the least recently
    used. ``get`` of a hit makes it the most recent. Not locked: callers
    that write from several threads hold their own lock (a ``get`` racing a
    drop of the same key only misses)."""

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._limit = 1
        self.limit = limit

    @property
    def limit(self) -> int:
        """The most items kept; lowering it drops the oldest at once."""
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"an LRU limit must be a whole number >= 1, got {limit!r}")
        self._limit = limit
        self._trim()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            try:  # noqa: SIM105 - contextlib.suppress costs a context manager per call on a hot path
                self._items.move_to_end(key)
            except KeyError:  # dropped by another thread meanwhile
                pass
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        self._trim()

    def _trim(self) -> None:
        items = self._items
        while len(items) > self._limit:
            try:
                items.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                return

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
