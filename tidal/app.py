"""App: the user's application object: a :class:`~tidal.engine.runtime.Runtime`
with the verbs an application calls (components, relations, feedback, SQL),
and the process's default app."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import constants, relations
from .component import Component, use_default_app
from .core.component import CacheMode, ComponentSpec
from .engine.dispatch import trigger_op
from .engine.freshness import Freshness, freshness
from .engine.runtime import Runtime
from .exceptions import DefinitionError, RecordNotFoundError
from .experiment import Experiment

if TYPE_CHECKING:
    from .relations import Record, Rows
    from .relations.builtin import Feedback

R = TypeVar("R", bound="Record")


class App(Runtime[Component]):
    """A Tidal application.

    ``store`` is a URL (``sqlite:///path``, ``memory://``, ``redis://…``) or a
    Store; by default a SQLite file named after the app in ``TIDAL_HOME``
    (``./.tidal``). ``db`` is where relations live (a SQLAlchemy URL, e.g.
    ``postgresql://…``); by default the store's SQLite file (an in-memory
    SQLite database for ``memory://``). No server is needed::

        app = tidal.App("shop")
        Prefs = app.component("Prefs")
    """

    # -- components -------------------------------------------------------

    def component(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        cache_ttl: float = constants.DEFAULT_CACHE_TTL,
        *,
        cache_mode: CacheMode = "version",
    ) -> Component:
        """Define a component that runs in this app."""
        return Component(name, params, cache_ttl, cache_mode=cache_mode, app=self)

    # -- relations --------------------------------------------------------

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

    def insert_many(self, records: Iterable[Any], *, relation: type[Record] | None = None) -> list[Any]:
        """Store many records in one transaction: all or nothing. Dicts need
        ``relation``; a bad record raises RecordValidationError naming its
        index and field, and nothing is written."""
        items = self.db.validate(list(records), relation)
        stored = self.db.insert_many(items)
        self.records_written(items)
        return stored

    def upsert(self, record: R) -> R:
        """Insert the record, or replace the stored one with the same id."""
        stored: R = self.upsert_many([record])[0]
        return stored

    def upsert_many(self, records: Iterable[Any], *, relation: type[Record] | None = None) -> list[Any]:
        """``upsert`` for many records, in one transaction."""
        items = self.db.validate(list(records), relation)
        stored = self.db.insert_many(items, upsert=True)
        self.records_written(items)
        return stored

    def update(self, record: R) -> R:
        """Replace a stored record (same id); RecordNotFoundError if absent."""
        stored: R = self.update_many([record])[0]
        return stored

    def update_many(self, records: Iterable[Any]) -> list[Any]:
        """``update`` for many records, in one transaction."""
        items = self.db.validate(list(records))
        stored = self.db.update_many(items)
        self.records_written(items)
        return stored

    def delete(self, cls: type[R], record_id: str) -> R:
        """Delete a record by id; returns it. RecordNotFoundError if absent."""
        return self.delete_many(cls, [record_id])[0]

    def delete_many(self, cls: type[R], ids: Sequence[str]) -> list[R]:
        """Delete records by id in one transaction."""
        deleted = self.db.delete_many(cls, list(ids))
        self.relations_written(cls)
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
        in ``params``) over the app's relations, ``runs`` and ``feedback``
        included; returns rows (``.df()``, ``.arrow()`` on request).
        Read-only unless ``write=True``."""
        self.flush_runs()
        return self.db.sql(query, params, write=write)

    def backfill(self, component: ComponentSpec, flow: str | None = None, *, batch: int = 500) -> int:
        """Replay every stored record of the relation(s) that trigger
        ``component`` (only ``flow``'s triggers, if given) as inserts, into
        the triggers that take inserts, so that a trigger added to an existing
        app catches up. Records stored when the call starts are replayed
        (unless deleted meanwhile); later ones fire the trigger themselves.
        Returns the number of ops queued; running it twice queues each record
        only once per call."""
        # Replayed as inserts: only into triggers that take inserts.
        triggers = [t for t in component.triggers if (flow is None or t.flow == flow) and "insert" in t.events]
        if not triggers:
            raise DefinitionError(
                f"component {component.name} has no relation trigger on inserts" + (f" for {flow!r}" if flow else "")
            )
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

    def records_written(self, records: Sequence[Record]) -> None:
        """Hook: ``records`` were written (each relation once)."""
        for cls in {type(r) for r in records}:
            self.relations_written(cls)

    # -- runs log and feedback ---------------------------------------------

    def feedback(
        self,
        run_id: str,
        score: float | None = None,
        label: str | None = None,
        comment: str | None = None,
    ) -> Feedback:
        """Store feedback on a run (``instance.last_run_id``) in the
        ``feedback`` relation, where it can trigger updates::

            @Ranker.update(on=tidal.Feedback, instance=lambda f: f.instance)
            def learn(state, props): ...
        """
        self.flush_runs(always=True)
        run = self.get(relations.Run, run_id)
        if run is None:
            raise RecordNotFoundError(f"no run {run_id!r} in the runs log of app {self.name!r}")
        stored: Feedback = self.insert(
            relations.Feedback(
                run_id=run_id,
                component=run.component,
                instance=run.instance,
                flow=run.flow,
                score=score,
                label=label,
                comment=comment,
            )
        )
        return stored

    # -- experiments ------------------------------------------------------

    def experiment(self, name: str) -> Experiment:
        """The experiment ``Component.param`` (a :class:`tidal.Variants`
        param): ``.report(metric="feedback" | scorer name)``,
        ``.promote(variant)``, ``.variant(instance)``. See docs/evals.md."""
        return Experiment(self, name)

    def experiments(self) -> list[str]:
        """The names of the experiments of this process's components."""
        return sorted(f"{c.name}.{param}" for c in self.components.values() for param in c.variant_params)

    def freshness(
        self, components: list[str] | None = None, window: timedelta = timedelta(minutes=5)
    ) -> list[Freshness]:
        """How far behind each component's updates are: queue depth, the
        oldest pending op's wait, failures, and enqueue-to-commit lag
        (p50 / p99) of update runs in the last ``window``. See
        :class:`tidal.engine.freshness.Freshness`."""
        return freshness(self, components, window)

    # -- lifecycle --------------------------------------------------------

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default: App | None = None
_default_lock = threading.Lock()


def default_app() -> App:
    """The app used by components not bound to one, configured from the
    environment (``TIDAL_STORE``, ``TIDAL_HOME``, ``TIDAL_SECRET_KEY``)."""
    global _default
    if _default is None or _default.closed:
        with _default_lock:
            if _default is None or _default.closed:
                _default = App()
    return _default


def set_default_app(app: App | None) -> None:
    """Replace the default app (tests, or code that configures one up front)."""
    global _default
    _default = app


use_default_app(default_app)
