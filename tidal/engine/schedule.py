"""Firing flows on schedules: the Scheduler queues each due tick of every
``every=`` / ``cron=`` update op.

A tick is queued with the dedupe key ``tick:<component>:<flow>:<instance>:<tick>``,
so several processes ticking at once, or a restart after downtime, queue it once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..core.props import Properties
from ..stores import NewOp

if TYPE_CHECKING:
    from ..core.component import ComponentSpec
    from ..core.triggers import Schedule
    from .runtime import Runtime

log = logging.getLogger("tidal.schedule")


class Scheduler:
    """Queues scheduled flows when their ticks come."""

    def __init__(self, app: Runtime) -> None:
        self.app = app
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tidal-schedule", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def schedules(self) -> list[tuple[ComponentSpec, Schedule]]:
        return [(c, s) for c in list(self.app.components.values()) for s in c.schedules]

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            try:
                self.run_once(now)
            except Exception:
                log.exception("queueing scheduled flows failed; retrying")
            upcoming = [s.next_tick(now) for _, s in self.schedules()]
            wait = min(upcoming, default=now + 60) - time.time()
            # Never sleep long: schedules defined later and clock jumps are
            # picked up within a second.
            self._stop.wait(min(max(wait, 0.005), 1.0))

    def run_once(self, now: float | None = None) -> int:
        """Queue the latest due tick of every schedule (once per tick across
        processes); returns how many ops were newly queued."""
        app = self.app
        now = time.time() if now is None else now
        ops: list[NewOp] = []
        for component, schedule in self.schedules():
            tick = schedule.last_tick(now)
            # One bad schedule (its instance function or an init_state
            # raising) must not hold back the others.
            try:
                instances = list(self._instances(component, schedule))
            except Exception:
                log.exception("schedule %s.%s: its instances could not be listed", component.name, schedule.flow)
                continue
            for instance in instances:
                try:
                    app.ensure_instance(component, instance)
                except Exception:
                    log.exception(
                        "schedule %s.%s: instance %r could not be created", component.name, schedule.flow, instance
                    )
                    continue
                props = Properties(tick=tick, schedule=schedule.describe())
                ops.append(
                    NewOp(
                        component.name,
                        instance,
                        schedule.flow,
                        app.codec.dumps((schedule.flow, props, ""), what=("tick of", schedule.flow)),
                        dedupe=f"tick:{component.name}:{schedule.flow}:{instance}:{tick:.3f}",
                        dedupe_ttl=max(2 * schedule.period, 3600.0),
                    )
                )
        if not ops:
            return 0
        queued = sum(1 for op_id in app.store.enqueue_many(ops) if op_id is not None)
        if queued:
            app.notify_enqueued()
        return queued

    def _instances(self, component: ComponentSpec, schedule: Schedule) -> Iterable[str]:
        target: Any = schedule.instance
        if target == "*":
            return self.app.store.list_instances(component.name)
        if isinstance(target, str):
            return [target]
        return [str(i) for i in target()]
