"""The built-in relations every app has: ``runs`` and ``feedback``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .record import Record


class Run(Record):
    """One serve or update run (the ``runs`` relation; ``id`` is the run id)."""

    __relation__ = "runs"

    component: str
    instance: str
    flow: str
    kind: str
    """``serve`` or ``update``."""
    status: str
    """``ok``, ``error`` or ``discarded``."""
    props: Any = None
    result: Any = None
    cached: bool = False
    version_read: int | None = None
    version_written: int | None = None
    op_id: int | None = None
    latency_ms: float = 0.0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    waited_ms: float | None = None
    """For update runs: how long the op waited in the queue before it ran."""


class Feedback(Record):
    """Feedback on a run (the ``feedback`` relation)."""

    __relation__ = "feedback"

    run_id: str
    component: str = ""
    instance: str = ""
    flow: str = ""
    score: float | None = None
    label: str | None = None
    comment: str | None = None
