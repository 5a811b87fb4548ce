"""Firing flows on relation changes: the Dispatcher moves changes from the
outbox into op queues.

Ops go to the store with the dedupe key ``chg:<change token>:<component>:<flow>``,
so that several processes doing the same work at once, or one redoing it
after a crash, still queue each op once (the Scheduler does the same for
ticks, see :mod:`tidal.engine.schedule`).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ..core.props import Properties
from ..stores import NewOp

if TYPE_CHECKING:
    from ..core.component import ComponentSpec
    from ..core.triggers import Trigger
    from ..relations.record import Record
    from .runtime import Runtime

log = logging.getLogger("tidal.dispatch")

CHANGE_BATCH = 500


def trigger_op(
    app: Runtime,
    component: ComponentSpec,
    trigger: Trigger,
    record: Record,
    event: str,
    old: Record | None,
    *,
    dedupe: str,
    **extra: Any,
) -> NewOp:
    """The op that one trigger queues for one record change: routed to its
    instance (created from init_state if new), with signed props ``record``,
    ``event``, ``old`` (and ``extra``)."""
    instance = trigger.route(record)
    app.ensure_instance(component, instance)
    props = Properties(record=record, event=event, old=old, **extra)
    payload = app.codec.dumps(
        (trigger.flow, props, "serve" if trigger.serve else ""), what=("record of", type(record).relation())
    )
    return NewOp(component.name, instance, trigger.flow, payload, dedupe=dedupe)


class Dispatcher:
    """Moves changes of watched relations from the outbox into op queues."""

    def __init__(self, app: Runtime) -> None:
        self.app = app
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dispatched = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tidal-dispatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def notify(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        sweep = self.app.settings.sweep_seconds
        while not self._stop.is_set():
            self._wake.clear()
            try:
                moved = self.run_once()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("dispatching relation changes failed; retrying")
                moved = 0
            if moved < CHANGE_BATCH:
                self._wake.wait(sweep)

    def run_once(self) -> int:
        """Queue the ops of up to CHANGE_BATCH changes; returns how many changes."""
        # One hand-over at a time per app: the dispatcher thread and a
        # flush_update in another thread would otherwise both read the same
        # changes and build their ops twice (dedupe keeps the queue right,
        # but the work is wasted).
        with self.app.dispatch_lock:
            return self._run_once()

    def _run_once(self) -> int:
        app = self.app
        db = app.db
        db.outbox.redeclare()
        # Only relations whose every live trigger (declared by any process)
        # this process knows: acking a change hands it over for good.
        changes = db.pending_changes(CHANGE_BATCH, db.outbox.consumable())
        if not changes:
            return 0
        ops: list[NewOp] = []
        for change in changes:
            cls = db.relation_class(change.relation)
            if cls is None:
                continue
            try:
                record = cls.model_validate(change.record)
                old = cls.model_validate(change.old) if change.old else None
            except Exception:
                # One change that no longer fits its class must not stall
                # every change behind it: log it (with its payload) and go on.
                log.exception("change %s of %s no longer fits %s: %r", change.id, change.relation, cls, change.record)
                continue
            for component in list(app.components.values()):
                for trigger in component.triggers:
                    if trigger.relation.relation() != change.relation or change.event not in trigger.events:
                        continue
                    try:
                        op = trigger_op(
                            app,
                            component,
                            trigger,
                            record,
                            change.event,
                            old,
                            dedupe=f"chg:{change.token}:{component.name}:{trigger.flow}",
                        )
                    except Exception:
                        log.exception(
                            "trigger %s.%s on %s %s %s could not be queued",
                            component.name,
                            trigger.flow,
                            change.relation,
                            change.event,
                            change.record_id,
                        )
                        continue
                    ops.append(op)
        if ops:
            app.store.enqueue_many(ops)
        db.ack_changes([c.id for c in changes])
        self.dispatched += len(ops)
        if ops:
            app.notify_enqueued()
        return len(changes)
