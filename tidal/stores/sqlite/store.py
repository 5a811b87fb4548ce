"""The embedded default store: one SQLite file in WAL mode, safe for several
processes on one machine. Its tables: :mod:`~tidal.stores.sqlite.schema`;
its connections and transactions: :mod:`~tidal.stores.sqlite.connections`;
the verbs off the hot path: :mod:`~tidal.stores.sqlite.operators`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from ...exceptions import ConfigError, FailedOp, LeaseLostError, StoreError, VersionConflictError
from ..base import Claim, ClaimedOp, KeyInfo, KeyVersion, NewOp, QueueStats, StateRead, Store
from ..rates import PURGE_EVERY, check_rate, gcra
from .connections import Connections
from .operators import OperatorVerbs
from .schema import FAILED, SCHEMA


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///path`` URL points at (``sqlite:////abs`` for
    absolute paths, as in SQLAlchemy)."""
    parts = urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc:
        path = parts.netloc + "/" + path
    if not path:
        raise ConfigError(f"store URL {url!r} names no file; use sqlite:///path/to/file.db")
    return Path(path)


class SQLiteStore(Store):
    """State, queue and cache in one SQLite file."""

    shared = True

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.db = Connections(self.path, self.url, busy_timeout_ms=busy_timeout_ms)
        self.operators = OperatorVerbs(self.db)
        self._rate_takes = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self.db.conn()
        self.db.busy(lambda: conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;"))
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tidal_state)")]
        if "written_at" not in columns:  # a file made by an earlier Tidal
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                self.db.exec1("ALTER TABLE tidal_state ADD COLUMN written_at REAL", ())

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(sqlite_path(url))

    def close(self) -> None:
        self.db.close()

    def after_fork_in_child(self) -> None:
        self.db.after_fork_in_child()

    # -- state ------------------------------------------------------------

    def get_version(self, component: str, instance: str) -> int | None:
        conn = self.db.conn()
        local = self.db.local
        # PRAGMA data_version changes only when another connection commits,
        # so while it stays put the versions this thread saw are current and
        # a serve costs no table lookup at all.
        (data_version,) = self.db.busy(lambda: conn.execute("PRAGMA data_version").fetchone())
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
        self.db.local.versions[(component, instance)] = version

    def read_state(self, component: str, instance: str, since: int = 0) -> StateRead | None:
        conn = self.db.conn()
        with self.db.read(conn):
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
        conn = self.db.conn()
        now = time.time()
        with self.db.write(conn):
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
        failed: Mapping[int, str] | None = None,
        expected_version: int | None = None,
        bump: int = 1,
    ) -> int:
        conn = self.db.conn()
        deleted = tuple(deleted)
        now = time.time()
        key = (component, instance)
        with self.db.write(conn):
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
                errors = dict(failed or {})
                conn.executemany(
                    "UPDATE tidal_ops SET status=?, error=?, failed_at=? WHERE id=?",
                    [(FAILED, err, now, op_id) for op_id, err in errors.items()],
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

    def list_instances(self, component: str) -> list[str]:
        rows = (
            self.db.conn()
            .execute("SELECT instance FROM tidal_instances WHERE component=? ORDER BY instance", (component,))
            .fetchall()
        )
        return [r[0] for r in rows]

    def delete_instance(self, component: str, instance: str) -> None:
        conn = self.db.conn()
        with self.db.write(conn):
            for table in (
                "tidal_instances",
                "tidal_state",
                "tidal_history",
                "tidal_ops",
                "tidal_leases",
                "tidal_queues",
            ):
                conn.execute(f"DELETE FROM {table} WHERE component=? AND instance=?", (component, instance))
        self.db.local.versions.pop((component, instance), None)

    # -- queue ------------------------------------------------------------

    def enqueue(self, component: str, instance: str, flow: str, payload: bytes) -> int:
        cur = self.db.exec1(
            "INSERT INTO tidal_ops (component, instance, flow, enqueued_at, payload) VALUES (?, ?, ?, ?, ?)",
            (component, instance, flow, time.time(), payload),
        )
        return int(cur.lastrowid or 0)

    def enqueue_many(self, ops: Sequence[NewOp]) -> list[int | None]:
        conn = self.db.conn()
        now = time.time()
        out: list[int | None] = []
        with self.db.write(conn):
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
        conn = self.db.conn()
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
        if self.db.busy(lambda: conn.execute(find, (*components, now)).fetchone()) is None:
            return None
        with self.db.write(conn):
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
        cur = self.db.exec1(
            "UPDATE tidal_leases SET expires_at=? WHERE component=? AND instance=? AND token=? AND expires_at>?",
            (expires, claim.component, claim.instance, claim.token, time.time()),
        )
        if cur.rowcount:
            claim.expires_at = expires
        return cur.rowcount == 1

    def release(self, claim: Claim) -> None:
        self.db.exec1(
            "DELETE FROM tidal_leases WHERE component=? AND instance=? AND token=?",
            (claim.component, claim.instance, claim.token),
        )

    # -- cache ------------------------------------------------------------

    def cache_get(self, key: bytes) -> bytes | None:
        row = (
            self.db.conn()
            .execute("SELECT value FROM tidal_cache WHERE key=? AND expires_at>?", (key, time.time()))
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def cache_set(self, key: bytes, value: bytes, ttl: float) -> None:
        self.db.exec1("INSERT OR REPLACE INTO tidal_cache VALUES (?, ?, ?)", (key, time.time() + ttl, value))

    # -- rate limits ------------------------------------------------------

    def rate_take(self, bucket: str, amount: float, limit: float, period: float) -> float:
        check_rate(amount, limit, period)
        conn = self.db.conn()
        self._rate_takes += 1
        purge = self._rate_takes % PURGE_EVERY == 0
        with self.db.write(conn):
            # Read the clock once the write lock is ours: takes are then
            # ordered by the time they use, across processes.
            now = time.time()
            row = conn.execute("SELECT tat FROM tidal_rates WHERE bucket=?", (bucket,)).fetchone()
            tat, wait = gcra(None if row is None else row[0], now, amount, limit, period)
            if not wait and tat > now:  # else the bucket is full: nothing to keep
                conn.execute("INSERT OR REPLACE INTO tidal_rates VALUES (?, ?)", (bucket, tat))
            if purge:
                conn.execute("DELETE FROM tidal_rates WHERE tat<?", (now,))
        return wait

    # -- off the hot path: see operators.py --------------------------------

    def describe_state(self, component: str, instance: str) -> list[KeyInfo] | None:
        return self.operators.describe_state(component, instance)

    def key_history(self, component: str, instance: str, key: str, limit: int | None = None) -> list[KeyVersion]:
        return self.operators.key_history(component, instance, key, limit)

    def pending(self, component: str, instance: str, *, flow: str | None = None, upto: int | None = None) -> int:
        return self.operators.pending(component, instance, flow=flow, upto=upto)

    def last_op_id(self, component: str, instance: str, *, flow: str | None = None) -> int:
        return self.operators.last_op_id(component, instance, flow=flow)

    def failures(
        self, component: str, instance: str, *, flow: str | None = None, after: int = 0, upto: int | None = None
    ) -> list[FailedOp]:
        return self.operators.failures(component, instance, flow=flow, after=after, upto=upto)

    def list_failures(
        self, component: str, *, instance: str | None = None, flow: str | None = None, limit: int | None = None
    ) -> list[FailedOp]:
        return self.operators.list_failures(component, instance=instance, flow=flow, limit=limit)

    def retry_failed(self, component: str, instance: str, op_id: int) -> int | None:
        return self.operators.retry_failed(component, instance, op_id)

    def drop_failed(self, component: str, instance: str, op_id: int) -> bool:
        return self.operators.drop_failed(component, instance, op_id)

    def queue_stats(self, components: Sequence[str]) -> dict[str, QueueStats]:
        return self.operators.queue_stats(components)
