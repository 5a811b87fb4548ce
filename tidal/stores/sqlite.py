"""The embedded default store: one SQLite file in WAL mode, safe for several
processes on one machine.

Tables::

    tidal_instances (component, instance) -> version, created_at, updated_at
    tidal_state     (component, instance, key) -> version, written_at, value
                    value NULL marks a deleted key (so that readers asking
                    "what changed since v" learn about deletions); value is
                    the last column so that filtering on version never reads
                    a large value's overflow pages (a file made before
                    written_at existed gets it appended after value)
    tidal_history   (component, instance, key, version) -> written_at, value:
                    earlier rows of tidal_state, moved here by the commit that
                    overwrote them, at most ``history_versions`` per key
    tidal_ops       id AUTOINCREMENT, component, instance, flow, status
                    (0 pending, 1 failed), enqueued_at, attempts, failed_at,
                    error, payload. Done ops are deleted in their commit.
    tidal_queues    (component, instance) of every instance with pending ops
    tidal_leases    (component, instance) -> token, expires_at
    tidal_dedupe    key -> expires_at: dedupe keys of enqueued triggers and ticks
    tidal_cache     key -> expires_at, value

Writes take ``BEGIN IMMEDIATE`` so that the check (lease, version) and the
write happen under SQLite's single writer lock; reads run in a deferred
transaction, which in WAL mode sees one consistent committed snapshot.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ..exceptions import LeaseLostError, StoreError, VersionConflictError
from .base import Claim, ClaimedOp, Failure, NewOp, StateRead, Store
from .sqlite_operators import SQLiteOperatorVerbs
from .sqlite_schema import SCHEMA

_PENDING, _FAILED = 0, 1

T = TypeVar("T")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc)
    return "locked" in message or "busy" in message


class _Local(threading.local):
    conn: sqlite3.Connection | None = None
    data_version: int = -1
    versions: dict[tuple[str, str], int]

    def __init__(self) -> None:
        self.versions = {}


class SQLiteStore(SQLiteOperatorVerbs, Store):
    """State, queue and cache in one SQLite file."""

    shared = True

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._busy_ms = busy_timeout_ms
        self._local = _Local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        # Writers of this process queue here instead of on SQLite's lock:
        # SQLite's busy handler sleeps for whole milliseconds between
        # retries, which would cap a busy process at a few thousand writes
        # a second. Other processes still meet at SQLite's lock.
        self._wlock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        self._busy(lambda: conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;"))
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tidal_state)")]
        if "written_at" not in columns:  # a file made by an earlier Tidal
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                self._exec1("ALTER TABLE tidal_state ADD COLUMN written_at REAL", ())

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        from . import sqlite_path

        return cls(sqlite_path(url))

    # -- connections ------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = self._local.conn
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError(f"cannot use {self.url}, as the store has been closed")
        # One connection per thread: sqlite3 connections must not be shared
        # between threads without a lock, and separate connections let WAL
        # readers run while a writer commits.
        # timeout=0: a busy database raises at once and _busy() retries after
        # a sleep of tens of microseconds. SQLite's own busy handler sleeps
        # 1, 2, 5, 10... milliseconds, which caps two processes sharing the
        # file at a few hundred writes a second each.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        self._busy(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes, as WAL intends
        # Checkpoint the WAL every ~40 MB instead of every 4 MB: a small queue
        # insert then rarely pays for a checkpoint, at the cost of a larger
        # -wal file between checkpoints.
        conn.execute("PRAGMA wal_autocheckpoint=10000")
        self._local.conn = conn
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        with self._wlock:
            self._busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                self._busy(lambda: conn.execute("COMMIT"))
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _exec1(self, sql: str, args: Sequence[object]) -> sqlite3.Cursor:
        """One write statement in its own transaction, in this process's turn."""
        conn = self._conn()
        with self._wlock:
            return self._busy(lambda: conn.execute(sql, args))

    def _busy(self, run: Callable[[], T]) -> T:
        """``run()``, retried while another process holds the database lock."""
        try:
            return run()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        deadline = time.monotonic() + self._busy_ms / 1000
        pause = 0.00005
        while True:
            time.sleep(pause)
            try:
                return run()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(f"{self.url} stayed locked by another process for {self._busy_ms} ms") from exc
            pause = min(pause * 2, 0.005)

    @contextmanager
    def _read(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        self._busy(lambda: conn.execute("BEGIN"))
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.ProgrammingError):
                conn.close()
        self._local = _Local()

    # -- state ------------------------------------------------------------

    def get_version(self, component: str, instance: str) -> int | None:
        conn = self._conn()
        local = self._local
        # PRAGMA data_version changes only when another connection commits,
        # so while it stays put the versions this thread saw are current and
        # a serve costs no table lookup at all.
        (data_version,) = self._busy(lambda: conn.execute("PRAGMA data_version").fetchone())
        if data_version != local.data_version:
            local.versions.clear()
            local.data_version = data_version
        key = (component, instance)
        version = local.versions.get(key)
        if version is None:
            row = conn.execute("SELECT version FROM tidal_instances WHERE component=? AND instance=?", key).fetchone()
            if row is None:
                return None
            version = local.versions[key] = row[0]
        return version

    def _remember(self, component: str, instance: str, version: int) -> None:
        self._local.versions[(component, instance)] = version

    def read_state(self, component: str, instance: str, since: int = 0) -> StateRead | None:
        conn = self._conn()
        with self._read(conn):
            row = conn.execute(
                "SELECT version FROM tidal_instances WHERE component=? AND instance=?",
                (component, instance),
            ).fetchone()
            if row is None:
                return None
            rows = conn.execute(
                "SELECT key, value FROM tidal_state WHERE component=? AND instance=? AND version>?",
                (component, instance, since),
            ).fetchall()
        changed = {k: v for k, v in rows if v is not None}
        deleted = tuple(k for k, v in rows if v is None) if since else ()
        return StateRead(row[0], changed, deleted)

    def create_instance(self, component: str, instance: str, values: Mapping[str, bytes]) -> tuple[bool, int]:
        conn = self._conn()
        now = time.time()
        with self._write(conn):
            row = conn.execute(
                "SELECT version FROM tidal_instances WHERE component=? AND instance=?",
                (component, instance),
            ).fetchone()
            if row is not None:
                return False, row[0]
            conn.execute("INSERT INTO tidal_instances VALUES (?, ?, 1, ?, ?)", (component, instance, now, now))
            conn.executemany(
                "INSERT INTO tidal_state (component, instance, key, version, written_at, value) "
                "VALUES (?, ?, ?, 1, ?, ?)",
                [(component, instance, k, now, v) for k, v in values.items()],
            )
        self._remember(component, instance, 1)
        return True, 1

    def commit(
        self,
        component: str,
        instance: str,
        changes: Mapping[str, bytes],
        *,
        deleted: Iterable[str] = (),
        claim: Claim | None = None,
        done: Sequence[int] = (),
        failed: Sequence[Failure] = (),
        expected_version: int | None = None,
        bump: int = 1,
    ) -> int:
        conn = self._conn()
        deleted = tuple(deleted)
        now = time.time()
        key = (component, instance)
        with self._write(conn):
            if claim is not None:
                lease = conn.execute(
                    "SELECT token, expires_at FROM tidal_leases WHERE component=? AND instance=?", key
                ).fetchone()
                if lease is None or lease[0] != claim.token or lease[1] <= now:
                    raise LeaseLostError(
                        f"lease on {component}/{instance} was lost (expired or taken over); "
                        "its ops will be (or were) run by another worker"
                    )
            row = conn.execute("SELECT version FROM tidal_instances WHERE component=? AND instance=?", key).fetchone()
            if row is None:
                raise StoreError(f"no instance {component}/{instance} in {self.url}")
            version = row[0]
            if expected_version is not None and version != expected_version:
                raise VersionConflictError(
                    f"{component}/{instance} is at version {version}, expected {expected_version}"
                )
            if changes or deleted:
                version += max(bump, 1)
                conn.execute(
                    "UPDATE tidal_instances SET version=?, updated_at=? WHERE component=? AND instance=?",
                    (version, now, component, instance),
                )
                if self.history_versions > 0:
                    self._keep_history(conn, component, instance, [*changes, *deleted])
                conn.executemany(
                    "INSERT INTO tidal_state (component, instance, key, version, written_at, value) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (component, instance, key) "
                    "DO UPDATE SET version=excluded.version, written_at=excluded.written_at, value=excluded.value",
                    [(component, instance, k, version, now, v) for k, v in changes.items()],
                )
                conn.executemany(
                    "UPDATE tidal_state SET version=?, written_at=?, value=NULL "
                    "WHERE component=? AND instance=? AND key=?",
                    [(version, now, component, instance, k) for k in deleted],
                )
            if claim is not None:
                errors = {f.op_id: f.error for f in failed}
                conn.executemany(
                    "UPDATE tidal_ops SET status=?, error=?, failed_at=? WHERE id=?",
                    [(_FAILED, err, now, op_id) for op_id, err in errors.items()],
                )
                conn.executemany(
                    "DELETE FROM tidal_ops WHERE id=?",
                    [(op_id,) for op_id in claim.op_ids if op_id not in errors],
                )
                conn.execute("DELETE FROM tidal_leases WHERE component=? AND instance=?", key)
                conn.execute(
                    "DELETE FROM tidal_queues WHERE component=? AND instance=? AND NOT EXISTS ("
                    "SELECT 1 FROM tidal_ops WHERE component=? AND instance=? AND status=0)",
                    key + key,
                )
        self._remember(component, instance, version)
        return int(version)

    def _keep_history(self, conn: sqlite3.Connection, component: str, instance: str, keys: list[str]) -> None:
        """Move the rows about to be overwritten into tidal_history (inside
        the commit's transaction) and drop what is beyond the limit."""
        rows = [(component, instance, k) for k in keys]
        conn.executemany(
            "INSERT OR REPLACE INTO tidal_history (component, instance, key, version, written_at, value) "
            "SELECT component, instance, key, version, written_at, value FROM tidal_state "
            "WHERE component=? AND instance=? AND key=?",
            rows,
        )
        conn.executemany(
            "DELETE FROM tidal_history WHERE component=? AND instance=? AND key=? AND version<=("
            "SELECT version FROM tidal_history WHERE component=? AND instance=? AND key=? "
            "ORDER BY version DESC LIMIT 1 OFFSET ?)",
            [row + row + (self.history_versions,) for row in rows],
        )

    @staticmethod
    def _version_of(conn: sqlite3.Connection, component: str, instance: str) -> int | None:
        row = conn.execute(
            "SELECT version FROM tidal_instances WHERE component=? AND instance=?", (component, instance)
        ).fetchone()
        return None if row is None else int(row[0])

    def list_instances(self, component: str) -> list[str]:
        rows = (
            self._conn()
            .execute("SELECT instance FROM tidal_instances WHERE component=? ORDER BY instance", (component,))
            .fetchall()
        )
        return [r[0] for r in rows]

    def delete_instance(self, component: str, instance: str) -> None:
        conn = self._conn()
        with self._write(conn):
            for table in (
                "tidal_instances",
                "tidal_state",
                "tidal_history",
                "tidal_ops",
                "tidal_leases",
                "tidal_queues",
            ):
                conn.execute(f"DELETE FROM {table} WHERE component=? AND instance=?", (component, instance))
        self._local.versions.pop((component, instance), None)

    # -- queue ------------------------------------------------------------

    def enqueue(self, component: str, instance: str, flow: str, payload: bytes) -> int:
        cur = self._exec1(
            "INSERT INTO tidal_ops (component, instance, flow, enqueued_at, payload) VALUES (?, ?, ?, ?, ?)",
            (component, instance, flow, time.time(), payload),
        )
        return int(cur.lastrowid or 0)

    def enqueue_many(self, ops: Sequence[NewOp]) -> list[int | None]:
        conn = self._conn()
        now = time.time()
        out: list[int | None] = []
        with self._write(conn):
            for op in ops:
                if op.dedupe is not None:
                    fresh = conn.execute(
                        "INSERT INTO tidal_dedupe VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                        "SET expires_at=excluded.expires_at WHERE tidal_dedupe.expires_at<=?",
                        (op.dedupe, now + op.dedupe_ttl, now),
                    ).rowcount
                    if not fresh:
                        out.append(None)
                        continue
                cur = conn.execute(
                    "INSERT INTO tidal_ops (component, instance, flow, enqueued_at, payload) VALUES (?, ?, ?, ?, ?)",
                    (op.component, op.instance, op.flow, now, op.payload),
                )
                out.append(int(cur.lastrowid or 0))
            if any(op.dedupe for op in ops):
                conn.execute("DELETE FROM tidal_dedupe WHERE expires_at<?", (now,))
        return out

    def claim(
        self,
        components: Sequence[str],
        owner: str,
        lease_seconds: float,
        max_ops: int,
        *,
        count_newer: bool = True,
    ) -> Claim | None:
        if not components:
            return None
        conn = self._conn()
        marks = ",".join("?" * len(components))
        find = (
            "SELECT component, instance FROM ("
            "  SELECT q.component, q.instance, (SELECT min(o.id) FROM tidal_ops o WHERE o.component=q.component"
            "    AND o.instance=q.instance AND o.status=0) AS head"
            "  FROM tidal_queues q LEFT JOIN tidal_leases l ON l.component=q.component AND l.instance=q.instance"
            f"  WHERE q.component IN ({marks}) AND (l.expires_at IS NULL OR l.expires_at<=?)"
            ") WHERE head IS NOT NULL ORDER BY head LIMIT 2"
        )
        now = time.time()
        # Look first without the write lock: an idle poll must not serialise
        # every process on SQLite's writer lock.
        if self._busy(lambda: conn.execute(find, (*components, now)).fetchone()) is None:
            return None
        with self._write(conn):
            now = time.time()
            rows = conn.execute(find, (*components, now)).fetchall()
            if not rows:
                return None
            component, instance = rows[0]
            ops = conn.execute(
                "SELECT id, flow, payload, enqueued_at, attempts FROM tidal_ops "
                "WHERE component=? AND instance=? AND status=0 ORDER BY id LIMIT ?",
                (component, instance, max_ops),
            ).fetchall()
            last = ops[-1][0]
            counts: dict[str, int] = {}
            if count_newer:
                counts.update(
                    conn.execute(
                        "SELECT flow, count(*) FROM tidal_ops WHERE component=? AND instance=? "
                        "AND status=0 AND id>? GROUP BY flow",
                        (component, instance, last),
                    ).fetchall()
                )
            for op in ops:
                counts[op[1]] = counts.get(op[1], 0) + 1
            token = uuid.uuid4().hex
            expires = now + lease_seconds
            conn.execute(
                "INSERT OR REPLACE INTO tidal_leases VALUES (?, ?, ?, ?)",
                (component, instance, token, expires),
            )
            conn.execute(
                "UPDATE tidal_ops SET attempts=attempts+1 WHERE component=? AND instance=? AND status=0 AND id<=?",
                (component, instance, last),
            )
        claimed = []
        for op_id, flow, payload, enqueued_at, attempts in ops:
            counts[flow] -= 1
            claimed.append(ClaimedOp(op_id, flow, payload, enqueued_at, attempts + 1, counts[flow]))
        return Claim(component, instance, token, claimed, expires, others_waiting=len(rows) > 1)

    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        expires = time.time() + lease_seconds
        cur = self._exec1(
            "UPDATE tidal_leases SET expires_at=? WHERE component=? AND instance=? AND token=? AND expires_at>?",
            (expires, claim.component, claim.instance, claim.token, time.time()),
        )
        if cur.rowcount:
            claim.expires_at = expires
        return cur.rowcount == 1

    def release(self, claim: Claim) -> None:
        self._exec1(
            "DELETE FROM tidal_leases WHERE component=? AND instance=? AND token=?",
            (claim.component, claim.instance, claim.token),
        )

    # -- cache ------------------------------------------------------------

    def cache_get(self, key: bytes) -> bytes | None:
        row = (
            self._conn()
            .execute("SELECT value FROM tidal_cache WHERE key=? AND expires_at>?", (key, time.time()))
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def cache_set(self, key: bytes, value: bytes, ttl: float) -> None:
        self._exec1("INSERT OR REPLACE INTO tidal_cache VALUES (?, ?, ?)", (key, time.time() + ttl, value))
