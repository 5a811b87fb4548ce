"""The SQLite store's verbs for operators and the freshness view: pending
counts, failed ops (list, retry, drop), queue statistics, per-key
descriptions and history. None is on the hot path."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ...exceptions import FailedOp
from ..base import KeyInfo, KeyVersion, QueueStats
from .connections import Connections
from .schema import version_of


def _narrowed(
    sql: str, args: list[object], *, upto: int | None = None, flow: str | None = None
) -> tuple[str, list[object]]:
    """``sql`` and ``args`` with the optional ``id <= upto`` and ``flow = ?`` conditions."""
    if upto is not None:
        sql += " AND id<=?"
        args = [*args, upto]
    if flow is not None:
        sql += " AND flow=?"
        args = [*args, flow]
    return sql, args


class OperatorVerbs:
    """describe_state, key_history, pending, last_op_id, failures,
    list_failures, retry_failed, drop_failed and queue_stats on SQLite, for
    :class:`~tidal.stores.sqlite.store.SQLiteStore` to hand them to."""

    def __init__(self, db: Connections) -> None:
        self.db = db

    def describe_state(self, component: str, instance: str) -> list[KeyInfo] | None:
        conn = self.db.conn()
        with self.db.read(conn):
            if version_of(conn, component, instance) is None:
                return None
            rows = conn.execute(
                # length() of a blob reads its size from the record header,
                # not the value's overflow pages.
                "SELECT key, version, length(value), written_at FROM tidal_state "
                "WHERE component=? AND instance=? AND value IS NOT NULL ORDER BY key",
                (component, instance),
            ).fetchall()
        return [KeyInfo(k, int(v), int(n), at) for k, v, n, at in rows]

    def key_history(self, component: str, instance: str, key: str, limit: int | None = None) -> list[KeyVersion]:
        conn = self.db.conn()
        args = (component, instance, key)
        with self.db.read(conn):
            rows = conn.execute(
                "SELECT version, value, written_at FROM tidal_state WHERE component=? AND instance=? AND key=? "
                "UNION ALL SELECT version, value, written_at FROM tidal_history "
                "WHERE component=? AND instance=? AND key=? ORDER BY version DESC LIMIT ?",
                args + args + (-1 if limit is None else limit,),
            ).fetchall()
        return [KeyVersion(int(v), None if value is None else bytes(value), at) for v, value, at in rows]

    def pending(self, component: str, instance: str, *, flow: str | None = None, upto: int | None = None) -> int:
        sql, args = _narrowed(
            "SELECT count(*) FROM tidal_ops WHERE component=? AND instance=? AND status=0",
            [component, instance],
            upto=upto,
            flow=flow,
        )
        conn = self.db.conn()
        return int(self.db.busy(lambda: conn.execute(sql, args).fetchone())[0])

    def last_op_id(self, component: str, instance: str, *, flow: str | None = None) -> int:
        sql, args = _narrowed(
            "SELECT max(id) FROM tidal_ops WHERE component=? AND instance=?", [component, instance], flow=flow
        )
        conn = self.db.conn()
        row = self.db.busy(lambda: conn.execute(sql, args).fetchone())
        return int(row[0] or 0)

    def failures(
        self,
        component: str,
        instance: str,
        *,
        flow: str | None = None,
        after: int = 0,
        upto: int | None = None,
    ) -> list[FailedOp]:
        sql, args = _narrowed(
            "SELECT id, flow, error, failed_at FROM tidal_ops WHERE component=? AND instance=? AND status=1 AND id>?",
            [component, instance, after],
            upto=upto,
            flow=flow,
        )
        conn = self.db.conn()
        rows = self.db.busy(lambda: conn.execute(sql + " ORDER BY id", args).fetchall())
        return [FailedOp(r[0], component, instance, r[1], r[2] or "", r[3] or 0.0) for r in rows]

    def list_failures(
        self, component: str, *, instance: str | None = None, flow: str | None = None, limit: int | None = None
    ) -> list[FailedOp]:
        sql = "SELECT id, instance, flow, error, failed_at FROM tidal_ops WHERE component=? AND status=1"
        args: list[object] = [component]
        if instance is not None:
            sql += " AND instance=?"
            args.append(instance)
        if flow is not None:
            sql += " AND flow=?"
            args.append(flow)
        args.append(-1 if limit is None else limit)
        conn = self.db.conn()
        rows = self.db.busy(lambda: conn.execute(sql + " ORDER BY id DESC LIMIT ?", args).fetchall())
        return [FailedOp(r[0], component, r[1], r[2], r[3] or "", r[4] or 0.0) for r in rows]

    def retry_failed(self, component: str, instance: str, op_id: int) -> int | None:
        conn = self.db.conn()
        with self.db.write(conn):
            row = conn.execute(
                "SELECT flow, payload FROM tidal_ops WHERE id=? AND component=? AND instance=? AND status=1",
                (op_id, component, instance),
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM tidal_ops WHERE id=?", (op_id,))
            cur = conn.execute(
                "INSERT INTO tidal_ops (component, instance, flow, enqueued_at, payload) VALUES (?, ?, ?, ?, ?)",
                (component, instance, row[0], time.time(), row[1]),
            )
            return int(cur.lastrowid or 0)

    def drop_failed(self, component: str, instance: str, op_id: int) -> bool:
        cur = self.db.exec1(
            "DELETE FROM tidal_ops WHERE id=? AND component=? AND instance=? AND status=1",
            (op_id, component, instance),
        )
        return cur.rowcount == 1

    def queue_stats(self, components: Sequence[str]) -> dict[str, QueueStats]:
        conn = self.db.conn()
        out = {}
        for name in components:
            pending, instances, oldest, failed = self.db.busy(
                lambda name=name: conn.execute(  # type: ignore[misc]
                    "SELECT sum(status=0), count(DISTINCT CASE WHEN status=0 THEN instance END), "
                    "min(CASE WHEN status=0 THEN enqueued_at END), sum(status=1) FROM tidal_ops WHERE component=?",
                    (name,),
                ).fetchone()
            )
            out[name] = QueueStats(int(pending or 0), int(failed or 0), int(instances or 0), oldest)
        return out
