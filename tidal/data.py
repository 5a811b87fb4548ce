"""The relation verbs of an App: insert, update, delete, get, query, sql,
backfill. Kept apart from app.py, which is about state and execution."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .exceptions import DefinitionError

if TYPE_CHECKING:
    from .codec import Codec
    from .core.component import Component
    from .relations import Database, Record, Rows
    from .stores import Store

R = TypeVar("R", bound="Record")


class RelationsAPI:
    """Mixed into App; needs ``db``, ``store``, ``codec`` and ``ensure_instance``."""

    @property
    def db(self) -> Database:
        raise NotImplementedError  # pragma: no cover - App implements it

    def _relations_written(self, cls: type[Record]) -> None:  # pragma: no cover - App overrides
        """Hook: records of ``cls`` were written."""

    @overload
    def insert(self, record: R) -> R: ...

    @overload
    def insert(self, record: type[R], data: Mapping[str, Any]) -> R: ...

    def insert(self, record: Any, data: Mapping[str, Any] | None = None) -> Any:
        """Store a new record (or a dict validated as ``record``'s class);
        returns it as stored, with id and timestamps."""
        if isinstance(record, type):
            return self.insert_many([data or {}], relation=record)[0]
        return self.insert_many([record])[0]

    store: Store
    codec: Codec

    def insert_many(self, records: Iterable[Any], *, relation: type[Record] | None = None) -> list[Any]:
        """Store many records in one transaction: all or nothing. Dicts need
        ``relation``; a bad record raises RecordValidationError naming its
        index and field, and nothing is written."""
        items = self.db.validate(list(records), relation)
        stored = self.db.insert_many(items)
        self._written(items)
        return stored

    def upsert(self, record: R) -> R:
        """Insert the record, or replace the stored one with the same id."""
        stored: R = self.upsert_many([record])[0]
        return stored

    def upsert_many(self, records: Iterable[Any], *, relation: type[Record] | None = None) -> list[Any]:
        """``upsert`` for many records, in one transaction."""
        items = self.db.validate(list(records), relation)
        stored = self.db.insert_many(items, upsert=True)
        self._written(items)
        return stored

    def update(self, record: R) -> R:
        """Replace a stored record (same id); RecordNotFoundError if absent."""
        stored: R = self.update_many([record])[0]
        return stored

    def update_many(self, records: Iterable[Any]) -> list[Any]:
        """``update`` for many records, in one transaction."""
        items = self.db.validate(list(records))
        stored = self.db.update_many(items)
        self._written(items)
        return stored

    def delete(self, cls: type[R], record_id: str) -> R:
        """Delete a record by id; returns it. RecordNotFoundError if absent."""
        return self.delete_many(cls, [record_id])[0]

    def delete_many(self, cls: type[R], ids: Sequence[str]) -> list[R]:
        """Delete records by id in one transaction."""
        deleted = self.db.delete_many(cls, list(ids))
        self._relations_written(cls)
        return deleted

    def get(self, cls: type[R], record_id: str) -> R | None:
        """The stored record with this id, or None."""
        return self.db.get(cls, record_id)

    def query(
        self,
        cls: type[R],
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | Sequence[str] = "created_at",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[R]:
        """Records whose fields equal ``where``'s values, ordered by
        ``order_by`` (``-field`` for descending; empty values last either
        way), ``limit`` of them after skipping ``offset``."""
        return self.db.query(cls, where, order_by=order_by, limit=limit, offset=offset)

    def sql(self, query: str, params: Mapping[str, Any] | None = None, *, write: bool = False) -> Rows:
        """Run SQL with bound parameters only (``:name`` placeholders, values
        in ``params``); returns rows (``.df()``, ``.arrow()`` on request).
        Read-only unless ``write=True``."""
        return self.db.sql(query, params, write=write)

    def backfill(self, component: Component, flow: str | None = None, *, batch: int = 500) -> int:
        """Replay every stored record of the relation(s) that trigger
        ``component`` (only ``flow``'s triggers, if given) as inserts, into
        the triggers that take inserts, so that a trigger added to an existing
        app catches up. Records stored when the call starts are replayed
        (unless deleted meanwhile); later ones fire the trigger themselves.
        Returns the number of ops queued; running it twice queues each record
        only once per call."""
        import uuid

        # Replayed as inserts: only into triggers that take inserts.
        triggers = [t for t in component.triggers if (flow is None or t.flow == flow) and "insert" in t.events]
        if not triggers:
            raise DefinitionError(
                f"component {component.name} has no relation trigger on inserts" + (f" for {flow!r}" if flow else "")
            )
        from .engine.dispatch import trigger_op

        run = uuid.uuid4().hex[:12]
        queued = 0
        for trigger in triggers:
            cls = trigger.relation
            # The ids first, then the records batch by batch: paging with an
            # offset would skip records when others are deleted meanwhile.
            # Records inserted from now on fire the trigger themselves.
            ids = [row[0] for row in self.db.sql(f'SELECT id FROM "{cls.relation()}" ORDER BY created_at, id').tuples()]
            for start in range(0, len(ids), batch):
                records = [r for r in (self.db.get(cls, i) for i in ids[start : start + batch]) if r is not None]
                ops = [
                    trigger_op(
                        self,
                        component,
                        trigger,
                        record,
                        "insert",
                        None,
                        dedupe=f"backfill:{run}:{component.name}:{trigger.flow}:{record.id}",
                        backfill=True,
                    )
                    for record in records
                ]
                queued += sum(1 for op_id in self.store.enqueue_many(ops) if op_id is not None)
        self.notify_enqueued()
        return queued

    def ensure_instance(self, component: Component, instance: str, params: dict[str, Any] | None = None) -> bool:
        raise NotImplementedError  # pragma: no cover - App implements it

    def notify_enqueued(self) -> None:
        raise NotImplementedError  # pragma: no cover - App implements it

    def _written(self, records: Sequence[Record]) -> None:
        for cls in {type(r) for r in records}:
            self._relations_written(cls)
