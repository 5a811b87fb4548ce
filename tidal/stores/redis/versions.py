"""The Redis store's cache of instance versions, kept fresh by the
server's invalidation pushes (client-side tracking), so that a serve learns
that nothing changed without a round trip."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Protocol, cast

import redis

from ...config import redis_versions_cached
from ...lru import LRU

log = logging.getLogger("tidal.stores.redis")

VERSION_TRUST_S = 1.0
"""How long a version get_version cached stays trusted without a read of
the server. The server's invalidation is what makes it stale; this bound only
matters for a connection that died without the socket noticing (a peer gone
without a word), which then serves no older version than this."""


class Versions(Protocol):
    """What the store asks of its version cache (one server's, or a
    cluster's one per node)."""

    def get(self, key: bytes) -> bytes | None: ...
    def forget(self, key: bytes) -> None: ...
    def after_fork_in_child(self) -> None: ...
    def close(self) -> None: ...


class VersionCache:
    """The versions get_version read, kept in this process until the server
    says they changed: a connection of their own speaks RESP3 with ``CLIENT
    TRACKING ON``, so the server remembers which ``T:meta`` keys it read and
    pushes an invalidation for each one written (or deleted, expired,
    evicted) after that read. Each lookup first takes in the invalidations
    that arrived (a non-blocking read of the socket); a version still cached
    after that is current, and otherwise one HGET reads it (and tracks it).
    Only ``T:meta`` is read over this connection, so only those keys are
    tracked. A server that cannot track (RESP2 only, or the command refused)
    gets a plain HGET per call on the store's client.

    Why the next get_version sees a commit made elsewhere: the server queues
    an invalidation on the reader's connection while it runs the write, and
    flushes it in the same pass as the writer's reply; but it may flush the
    reply first, and a writer that went on at once could have a reader look
    before the push left the server (seen under load). So every write of
    ``T:meta`` (commit, create, delete) returns only after one more round
    trip of its writer (the claim index update that follows a worker's
    commit or a delete, else a PING): the server reads that command only after the pass
    that flushed the push, so when the write returns, the push is in the
    reader's socket (same host) or on the wire ahead of anything the writer
    sends next. The reader's drain then takes it in. (A reader that leaves
    more than a socket buffer of invalidations unread can have the rest held
    back by the server; it drains them on its next call, and the trust
    bound below caps how long any version is served without a read.)
    A worker's one-server commit skips that round trip: the worker's
    process forgets the version itself (:meth:`forget`), and nobody else
    waits on that commit's return."""

    def __init__(self, client: redis.Redis, *, cached: int | None = None) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._conn: Any = None
        self._known: LRU[bytes, tuple[bytes | None, float]] = LRU(
            cached if cached is not None else redis_versions_cached()
        )
        self.tracking = True

    @property
    def cached(self) -> int:
        """Versions cached now."""
        return len(self._known)

    @property
    def limit(self) -> int:
        """The most versions cached (:data:`~tidal.constants.REDIS_VERSIONS_CACHED`):
        past it the least recently read is dropped, and read from the server
        again when asked for. Settable; lowering it drops the oldest at once."""
        return self._known.limit

    @limit.setter
    def limit(self, limit: int) -> None:
        with self._lock:
            self._known.limit = limit

    @property
    def connection(self) -> Any:
        """The tracking connection, None until the first lookup (for tests)."""
        return self._conn

    def _invalidated(self, message: list[Any]) -> None:
        keys = message[1] if len(message) > 1 else None
        if keys is None:  # FLUSHALL, FLUSHDB, or the server's tracking table overflowed
            self._known.clear()
        else:
            for key in keys:
                self._known.pop(key)

    def _open(self) -> Any:
        pool = self._client.connection_pool
        conn = pool.connection_class(**{**pool.connection_kwargs, "protocol": 3})
        self._known.clear()
        try:
            conn.connect()
            conn._parser.set_invalidation_push_handler(self._invalidated)
            conn.send_command("CLIENT", "TRACKING", "ON")
            conn.read_response()
        except redis.ResponseError as exc:  # no HELLO 3 or no tracking: plain HGETs from now on
            conn.disconnect()
            log.info("Redis store: no client-side tracking (%s); get_version reads the server each time", exc)
            self.tracking = False
            return None
        except BaseException:
            conn.disconnect()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._known.clear()
        if conn is not None:
            conn.disconnect()

    def after_fork_in_child(self) -> None:
        """Forked: the tracking socket and what it told belong to the parent
        (not closed here: it is the parent's too), and a parent's thread may
        have held the lock at the fork."""
        if self._pid != os.getpid():
            self._pid, self._lock, self._conn = os.getpid(), threading.Lock(), None
            self._known = LRU(self._known.limit)

    def get(self, key: bytes) -> bytes | None:
        if self._pid != os.getpid():
            self.after_fork_in_child()
        if not self.tracking:
            return cast(bytes | None, self._client.hget(key, "v"))
        with self._lock:
            now = time.monotonic()
            conn = self._conn
            if conn is not None:
                try:
                    while conn.can_read(0):
                        conn.read_response(push_request=True)
                except redis.RedisError:
                    # The server closed it (a restart, a timeout): nothing it
                    # told can be trusted now; start over on a new one.
                    self._drop()
                    conn = None
                else:
                    hit = self._known.get(key)
                    if hit is not None and now - hit[1] < VERSION_TRUST_S:
                        return hit[0]
            if conn is None:
                conn = self._open()
                if conn is None:
                    return cast(bytes | None, self._client.hget(key, "v"))
            try:
                conn.send_command("HGET", key, "v")
                value = cast(bytes | None, conn.read_response())
            except BaseException:
                self._drop()
                raise
            self._known.put(key, (value, now))
            return value

    def forget(self, key: bytes) -> None:
        """Drop one cached version (this process has just changed it)."""
        if self._pid != os.getpid():
            self.after_fork_in_child()
        with self._lock:
            self._known.pop(key)

    def close(self) -> None:
        with self._lock:
            self._drop()
