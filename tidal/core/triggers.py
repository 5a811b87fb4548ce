"""What fires a flow besides a call: relation changes and schedules."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..exceptions import DefinitionError
from ..types import RecordClass

EVENTS = ("insert", "update", "delete")

InstanceRoute = str | Callable[[Any], str]
"""Which instance a triggered op goes to: a fixed id, or a function of the
record (for deletes: the record as it was)."""


@dataclass(frozen=True)
class Trigger:
    """Run ``flow`` when a record of ``relation`` is inserted, updated or deleted.

    The op's props are ``record``, ``event`` and ``old`` (the previous record
    for updates). With ``serve`` the flow's serve op runs in the background
    too, and with ``into`` its result is stored as a record of that relation
    (Motion 2023's infer on a relation)."""

    relation: RecordClass
    events: tuple[str, ...]
    instance: InstanceRoute
    flow: str
    serve: bool = False
    into: RecordClass | None = None

    def route(self, record: Any) -> str:
        """The instance id for ``record``."""
        if isinstance(self.instance, str):
            return self.instance
        instance_id = self.instance(record)
        if not isinstance(instance_id, str) or not instance_id:
            raise TypeError(f"instance= of trigger {self.flow!r} returned {instance_id!r}, expected a non-empty str")
        return instance_id


@dataclass(frozen=True)
class Schedule:
    """Run ``flow`` every ``every`` seconds or on a ``cron`` expression.

    Ticks are aligned (``every`` to the Unix epoch, cron to its expression),
    each tick fires at most once across all processes, and ticks missed while
    no process ran are folded into one run as soon as one does."""

    flow: str
    every: float | None
    cron: str | None
    instance: str | Callable[[], Iterable[str]]

    def last_tick(self, now: float) -> float:
        """The latest tick at or before ``now`` (epoch seconds)."""
        if self.every is not None:
            return (now // self.every) * self.every
        from croniter import croniter

        assert self.cron is not None
        # get_prev is strictly before its start and cron has whole seconds:
        # start one second after the current second, so that a tick falling
        # on this very second (also a seconds field's) counts as due.
        base = datetime.fromtimestamp(math.floor(now) + 1, UTC)
        return float(croniter(self.cron, base).get_prev(float))

    def next_tick(self, now: float) -> float:
        """The first tick after ``now``."""
        if self.every is not None:
            return (now // self.every + 1) * self.every
        from croniter import croniter

        assert self.cron is not None
        return float(croniter(self.cron, datetime.fromtimestamp(now, UTC)).get_next(float))

    @property
    def period(self) -> float:
        """Seconds between ticks (an estimate for cron)."""
        if self.every is not None:
            return self.every
        return max(self.next_tick(self.next_tick(0.0)) - self.next_tick(0.0), 1.0)

    def describe(self) -> str:
        return f"every {self.every:g}s" if self.every is not None else f"cron {self.cron!r}"


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_every(every: str | float | int, where: str) -> float:
    """``"10m"``, ``"1h30m"``, ``"2d"`` or a number of seconds -> seconds."""
    if isinstance(every, int | float) and not isinstance(every, bool):
        seconds = float(every)
    elif isinstance(every, str):
        text = every.replace(" ", "").lower()
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise DefinitionError(
                f"{where}: every={every!r} is not a duration; use e.g. '30s', '10m', '1h30m', '2d' or seconds"
            )
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise DefinitionError(f"{where}: every= must be a duration string or seconds, got {every!r}")
    if seconds < 0.01:
        raise DefinitionError(f"{where}: every={every!r} is shorter than 10 ms")
    return seconds


def check_cron(cron: str, where: str) -> str:
    """Validate a cron expression (5 or 6 fields) up front."""
    from croniter import croniter

    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise DefinitionError(f"{where}: cron={cron!r} is not a valid cron expression (e.g. '0 * * * *')")
    return cron


def check_events(events: Iterable[str], where: str) -> tuple[str, ...]:
    out = (events,) if isinstance(events, str) else tuple(events)
    bad = [e for e in out if e not in EVENTS]
    if bad or not out:
        raise DefinitionError(f"{where}: events must be some of {EVENTS}, got {out!r}")
    return out
