"""The SQLite store's connections (one per thread) and transactions.

Writes take ``BEGIN IMMEDIATE`` so that the check (lease, version) and the
write happen under SQLite's single writer lock; reads run in a deferred
transaction, which in WAL mode sees one consistent committed snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ...exceptions import StoreError

T = TypeVar("T")


def is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc)
    return "locked" in message or "busy" in message


class ThreadState(threading.local):
    """What one thread keeps: its connection, and the versions it saw as of
    the database's ``data_version`` (see ``SQLiteStore.get_version``)."""

    conn: sqlite3.Connection | None = None
    data_version: int = -1
    versions: dict[tuple[str, str], int]

    def __init__(self) -> None:
        self.versions = {}


_inherited: list[sqlite3.Connection] = []
"""Connections a forked child inherited from its parent: kept here so that
the child never closes them (closing one acts on the file's locks and WAL as
if this process had opened it; SQLite connections must not cross a fork)."""


class Connections:
    """The connections of one store to its file."""

    def __init__(self, path: Path, url: str, *, busy_timeout_ms: int) -> None:
        self.path = path
        self.url = url
        self._busy_ms = busy_timeout_ms
        self._pid = os.getpid()
        self.local = ThreadState()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        # Writers of this process queue here instead of on SQLite's lock:
        # SQLite's busy handler sleeps for whole milliseconds between
        # retries, which would cap a busy process at a few thousand writes
        # a second. Other processes still meet at SQLite's lock.
        self._wlock = threading.Lock()
        self._held_for_fork = False
        _every.add(self)

    def conn(self) -> sqlite3.Connection:
        """The calling thread's connection."""
        conn = self.local.conn
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError(f"cannot use {self.url}, as the store has been closed")
        # One connection per thread: sqlite3 connections must not be shared
        # between threads without a lock, and separate connections let WAL
        # readers run while a writer commits.
        # timeout=0: a busy database raises at once and busy() retries after
        # a sleep of tens of microseconds. SQLite's own busy handler sleeps
        # 1, 2, 5, 10... milliseconds, which caps two processes sharing the
        # file at a few hundred writes a second each.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        self.busy(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes, as WAL intends
        # Checkpoint the WAL every ~40 MB instead of every 4 MB: a small queue
        # insert then rarely pays for a checkpoint, at the cost of a larger
        # -wal file between checkpoints.
        conn.execute("PRAGMA wal_autocheckpoint=10000")
        self.local.conn = conn
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def write(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A write transaction, in this process's turn."""
        with self._wlock:
            self.busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                self.busy(lambda: conn.execute("COMMIT"))
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot."""
        self.busy(lambda: conn.execute("BEGIN"))
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def exec1(self, sql: str, args: Sequence[object]) -> sqlite3.Cursor:
        """One write statement in its own transaction, in this process's turn."""
        conn = self.conn()
        with self._wlock:
            return self.busy(lambda: conn.execute(sql, args))

    def busy(self, run: Callable[[], T]) -> T:
        """``run()``, retried while another process holds the database lock."""
        try:
            return run()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        deadline = time.monotonic() + self._busy_ms / 1000
        pause = 0.00005
        while True:
            time.sleep(pause)
            try:
                return run()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(f"{self.url} stayed locked by another process for {self._busy_ms} ms") from exc
            pause = min(pause * 2, 0.005)

    def before_fork(self) -> None:
        """Take this process's write turn, so that no write transaction of
        ours is under way at the fork: SQLite keeps, per process, which of
        its connections hold the WAL's locks, and a child that inherited
        "held by another connection" for the write lock would find the
        database locked forever (every new connection of the child shares
        that bookkeeping). Bounded: a turn held past it is left (logged)."""
        self._held_for_fork = self._wlock.acquire(timeout=FORK_WAIT_S)
        if not self._held_for_fork:
            log.warning("%s: forking while a write of this process is under way", self.url)

    def after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._wlock.release()

    def after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's connections (the forking
        thread's would otherwise be this process's main thread's) and locks
        (a parent's thread may have held one at the fork)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._held_for_fork = False
        self._all_lock = threading.Lock()
        self._wlock = threading.Lock()
        _inherited.extend(self._all)
        self._all = []
        self.local = ThreadState()

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.ProgrammingError):
                conn.close()
        self.local = ThreadState()


FORK_WAIT_S = 10.0
"""How long a fork waits for a write transaction of this process to end."""

log = logging.getLogger("tidal.stores.sqlite")

_every: weakref.WeakSet[Connections] = weakref.WeakSet()


def _before_fork() -> None:
    for db in list(_every):
        if db._pid == os.getpid() and not db._closed:
            db.before_fork()


def _after_fork_in_parent() -> None:
    for db in list(_every):
        db.after_fork_in_parent()


def _after_fork_in_child() -> None:
    for db in list(_every):
        db.after_fork_in_child()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
