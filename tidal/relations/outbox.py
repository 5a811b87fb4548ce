"""The outbox of relation changes, and the registry of who consumes it.

``tidal_changes`` gets one row per change of a watched relation, in the
transaction of the change itself. ``tidal_triggers`` lists every trigger that
any process has declared (relation, component, flow), refreshed while that
process runs. The registry is what lets processes differ: a process that
writes records without the components' code still writes change rows for
relations that someone triggers on, and a dispatcher only consumes changes
of relations whose every live trigger it knows itself, leaving the others
to a process that does.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
import sqlalchemy as sa

if TYPE_CHECKING:
    from .record import Record

Event = Literal["insert", "update", "delete"]

CHANGES_TABLE = "tidal_changes"
TRIGGERS_TABLE = "tidal_triggers"

REGISTRY_CACHE_SECONDS = 5.0
"""How long a process trusts its copy of the trigger registry. A trigger
declared by another process is noticed by writers within this time."""

REGISTRATION_LIVE_SECONDS = 86_400.0
"""A trigger no process has declared for this long is taken to be gone (its
code was removed), so that its relation's changes can be consumed again."""

REFRESH_SECONDS = 600.0
"""How often a running process re-declares its triggers."""


@dataclass(frozen=True)
class Change:
    """One change of a watched relation, as recorded in the outbox."""

    id: int
    token: str
    """Unique across databases and time: names the change in dedupe keys."""
    relation: str
    event: Event
    record_id: str
    record: dict[str, Any]
    old: dict[str, Any] | None


class Outbox:
    """The changes table and the trigger registry of one database."""

    def __init__(
        self,
        metadata: sa.MetaData,
        connect: Callable[[], AbstractContextManager[sa.Connection]],
        begin: Callable[[], AbstractContextManager[sa.Connection]],
    ) -> None:
        self._connect = connect
        self._begin = begin
        self.changes = sa.Table(
            CHANGES_TABLE,
            metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
            sa.Column("token", sa.String(32), nullable=False),
            sa.Column("relation", sa.String(255), nullable=False),
            sa.Column("event", sa.String(16), nullable=False),
            sa.Column("record_id", sa.String(255), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("created_at", sa.Double(), nullable=False),
            sqlite_autoincrement=True,
        )
        self.triggers = sa.Table(
            TRIGGERS_TABLE,
            metadata,
            sa.Column("relation", sa.String(255), primary_key=True),
            sa.Column("component", sa.String(255), primary_key=True),
            sa.Column("flow", sa.String(255), primary_key=True),
            sa.Column("seen_at", sa.Double(), nullable=False),
        )
        for table in (self.changes, self.triggers):
            self._create(table)
        self._local: dict[str, set[tuple[str, str]]] = {}
        self._registry: dict[str, set[tuple[str, str]]] = {}
        self._registry_at = 0.0
        self._declared_at = 0.0
        self._lock = threading.Lock()

    def _create(self, table: sa.Table) -> None:
        """Create ``table`` unless it exists. Between the check and the
        CREATE another process opening the same database may create it
        (processes of one app start together): then theirs is used."""
        try:
            with self._begin() as conn:
                table.create(conn, checkfirst=True)
        except sa.exc.DBAPIError:
            with self._begin() as conn:
                if not sa.inspect(conn).has_table(table.name):
                    raise

    # -- the registry -----------------------------------------------------

    def declare(self, relation: str, component: str, flow: str) -> None:
        """This process triggers ``component.flow`` on ``relation``."""
        with self._lock:
            self._local.setdefault(relation, set()).add((component, flow))
        self._upsert([(relation, component, flow)])
        self._registry_at = 0.0  # re-read on next use

    def redeclare(self) -> None:
        """Refresh this process's registrations (called periodically)."""
        if time.time() - self._declared_at < REFRESH_SECONDS:
            return
        with self._lock:
            rows = [(rel, comp, flow) for rel, pairs in self._local.items() for comp, flow in pairs]
        self._upsert(rows)

    def _upsert(self, rows: list[tuple[str, str, str]]) -> None:
        if not rows:
            return
        now = time.time()
        table = self.triggers
        with self._begin() as conn:
            for relation, component, flow in rows:
                found = conn.execute(
                    sa.update(table)
                    .where(table.c.relation == relation, table.c.component == component, table.c.flow == flow)
                    .values(seen_at=now)
                ).rowcount
                if not found:
                    conn.execute(
                        sa.insert(table).values(relation=relation, component=component, flow=flow, seen_at=now)
                    )
        self._declared_at = now

    def registry(self) -> dict[str, set[tuple[str, str]]]:
        """Every live trigger of every process, by relation (cached briefly)."""
        now = time.time()
        if now - self._registry_at > REGISTRY_CACHE_SECONDS:
            table = self.triggers
            with self._connect() as conn:
                rows = conn.execute(
                    sa.select(table.c.relation, table.c.component, table.c.flow).where(
                        table.c.seen_at > now - REGISTRATION_LIVE_SECONDS
                    )
                ).all()
            registry: dict[str, set[tuple[str, str]]] = {}
            for relation, component, flow in rows:
                registry.setdefault(relation, set()).add((component, flow))
            self._registry, self._registry_at = registry, now
        return self._registry

    def watched(self, relation: str) -> bool:
        """Whether changes of ``relation`` go to the outbox."""
        return relation in self._local or relation in self.registry()

    def consumable(self) -> list[str]:
        """Relations whose every live trigger this process knows."""
        registry = self.registry()
        with self._lock:
            local = {rel: set(pairs) for rel, pairs in self._local.items()}
        return [rel for rel, pairs in local.items() if registry.get(rel, set()) <= pairs]

    # -- changes ----------------------------------------------------------

    @staticmethod
    def row(relation: str, event: Event, record: Record, old: Record | None) -> dict[str, Any]:
        """The outbox row of one change."""
        payload = {"record": record.model_dump(mode="json"), "old": old.model_dump(mode="json") if old else None}
        return {
            "token": uuid.uuid4().hex,
            "relation": relation,
            "event": event,
            "record_id": record.id,
            "payload": orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            "created_at": time.time(),
        }

    def write(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Add change rows inside the caller's transaction."""
        if rows:
            conn.execute(self.changes.insert(), rows)

    def pending(self, limit: int = 500, relations: Sequence[str] | None = None) -> list[Change]:
        """The oldest changes not yet handed to the queue (of ``relations``)."""
        table = self.changes
        stmt = sa.select(table).order_by(table.c.id).limit(limit)
        if relations is not None:
            if not relations:
                return []
            stmt = stmt.where(table.c.relation.in_(list(relations)))
        with self._connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for row in rows:
            payload = orjson.loads(row.payload)
            out.append(
                Change(row.id, row.token, row.relation, row.event, row.record_id, payload["record"], payload["old"])
            )
        return out

    def ack(self, ids: Sequence[int]) -> None:
        """Forget changes whose ops are queued."""
        if ids:
            with self._begin() as conn:
                conn.execute(self.changes.delete().where(self.changes.c.id.in_(list(ids))))
