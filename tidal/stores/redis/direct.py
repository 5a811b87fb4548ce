"""Connections of the Redis store, and why no call is retried.

Scripts on the hot path (enqueue, claim, a worker's commit) run on a
connection of the calling thread's own; everything else goes through the
client's pool. Why not the pool for all: a redis-py command call checks a
connection out and back in, wraps the call in its retry and observability
layers and runs response callbacks. On a small VM that is 40-60 µs of
Python per call, as much as the script's own time on the server, and it
holds the GIL that the app's serving and update threads share. Here a call
is: pack (hiredis when installed), one send, one read. Before each request
the connection is checked for a close by the server (one ``poll``), so that
a restart between two calls costs a reconnect, not a failed call.

Neither path retries a command that failed (redis-py's default for
``from_url``), and both reopen a connection the server closed on its next
use, so processes ride out a server restart without being restarted
themselves; each call made while the server is unreachable raises
:class:`~tidal.exceptions.StoreError`, and its connection is dropped. The
outcome of such a call is unknown: its script may have run before the reply
was lost (with a server killed while it wrote its append-only file, about
one failed ``run`` in fifty had queued its update). Of the verbs, only
enqueue is not idempotent when repeated after a lost reply: the repeated
push finds its ids below the watermark, so fresh ids are allocated and the
op is queued twice, unless it has a dedupe key (the instance's ``T:dd``
then recognises the repeat). That is why there is no retry policy: with
one, an acknowledged update was occasionally applied twice across a server
restart (tests/test_redis_faults.py), whereas without it every acknowledged
update is applied exactly once, and a caller that repeats a failed enqueue
knows it may duplicate it. A repeated claim leaves its lease unused until
it expires; a repeated commit is refused as a lost lease although it went
through (the state is right either way).
"""

from __future__ import annotations

import os
import select
import socket
import threading
import weakref
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class _Slot(threading.local):
    conn: Any = None
    pid: int = 0


def _quiet(sock: socket.socket) -> bool:
    """Whether a connection between requests is as it should be: open, with
    nothing to read (a closed one reads as readable). One ``poll`` with no
    wait (~2 µs), where redis-py's own check sets the socket's timeout twice
    around a read."""
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _evalsha(conn: Any, script: Script, keys: list[Any], args: list[Any]) -> Any:
    conn.send_packed_command(conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args), check_health=False)
    return conn.read_response()


class DirectScripts:
    """Runs registered :class:`~redis.commands.core.Script` objects with
    ``EVALSHA`` on one connection per thread."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._slot = _Slot()
        self._lock = threading.Lock()
        # Those of live threads (a thread's own goes with it).
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()

    def _connection(self) -> Any:
        slot = self._slot
        conn = slot.conn
        if conn is not None and slot.pid == os.getpid():
            sock = conn._sock
            if sock is not None and not _quiet(sock):
                conn.disconnect()  # sent and recv() will connect a fresh one
            return conn
        pool = self._client.connection_pool
        conn = pool.connection_class(**pool.connection_kwargs)
        slot.conn, slot.pid = conn, os.getpid()
        with self._lock:
            self._open.add(conn)
        return conn

    def __call__(self, script: Script, keys: list[Any], args: list[Any]) -> Any:
        conn = self._connection()
        try:
            try:
                return _evalsha(conn, script, keys, args)
            except NoScriptError:  # not run: the server lost its script cache (a restart)
                script.sha = self._client.script_load(script.script)
                return _evalsha(conn, script, keys, args)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            raise

    def after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's connections (each thread's
        slot checks the pid, but the forking thread's would be this process's
        main thread's) without closing them, and its lock."""
        self._lock = threading.Lock()
        self._open = weakref.WeakSet()
        self._slot = _Slot()

    def connections(self) -> list[Any]:
        """The connections of live threads (for tests)."""
        with self._lock:
            return list(self._open)

    def close(self) -> None:
        with self._lock:
            conns, self._open = list(self._open), weakref.WeakSet()
        for conn in conns:
            conn.disconnect()
