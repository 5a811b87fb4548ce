"""Scripts on the hot path (enqueue, claim, a worker's commit) run on a
connection of the calling thread's own, not through the client's pool.

Why not the plain client: a redis-py command call checks a connection out
of the pool and back in, wraps the call in its retry and observability
layers and runs response callbacks. On a small VM that is 40-60 µs of
Python per call, as much as the script's own time on the server, and it
holds the GIL that the app's serving and update threads share. Here a call
is: pack (hiredis when installed), one send, one read.

Semantics match the client without a retry policy (see the store's module
docs): a call that failed after its request may have gone out raises, and
its connection is dropped, so that the next call connects afresh. Before
each request the connection is checked for a close by the server, so that
a restart between two calls costs a reconnect, not a failed call.
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
                conn.send_packed_command(
                    conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args), check_health=False
                )
                return conn.read_response()
            except NoScriptError:  # not run: the server lost its script cache (a restart)
                script.sha = self._client.script_load(script.script)
                conn.send_packed_command(
                    conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args), check_health=False
                )
                return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            raise

    def close(self) -> None:
        with self._lock:
            conns, self._open = list(self._open), weakref.WeakSet()
        for conn in conns:
            conn.disconnect()
