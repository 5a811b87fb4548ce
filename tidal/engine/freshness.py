"""Freshness: how far each component's state is behind the calls and
changes that will update it (queue depth, and the lag from enqueue to
commit measured on recent update runs)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import relations

if TYPE_CHECKING:
    from .runtime import Runtime


@dataclass(frozen=True)
class Freshness:
    """One component's freshness."""

    component: str
    pending: int
    """Update ops queued or running."""
    instances_waiting: int
    """Instances with pending ops."""
    oldest_wait_s: float | None
    """How long the oldest pending op has waited so far."""
    failed: int
    """Failed ops kept for inspection."""
    updates: int
    """Update runs in the window."""
    lag_p50_ms: float | None
    """Median time from enqueue to the end of the run, over the window."""
    lag_p99_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def freshness(
    app: Runtime, components: list[str] | None = None, window: timedelta = timedelta(minutes=5)
) -> list[Freshness]:
    """Freshness of ``components`` (default: this app's components with
    update ops), lag over update runs in the last ``window``."""
    names = (
        components
        if components is not None
        else sorted(name for name, c in app.components.items() if c.runs_in_background)
    )
    stats = app.store.queue_stats(names)
    lags: dict[str, list[float]] = {name: [] for name in names}
    runlog = app.runlog
    if runlog is not None and names:
        runlog.flush()
        table = app.db.relation(relations.Run).table
        since = datetime.now(UTC) - window
        query = (
            table.select()
            .with_only_columns(table.c.component, table.c.waited_ms, table.c.latency_ms)
            .where(
                table.c.kind == "update",
                table.c.started_at >= since,
                table.c.component.in_(names),
                table.c.waited_ms.is_not(None),
            )
        )
        with app.db.connect() as conn:
            for component, waited, latency in conn.execute(query):
                lags[component].append(float(waited) + float(latency or 0.0))
    import numpy as np  # a third-party import deferred: numpy costs ~100 ms at `import tidal`

    now = time.time()
    out = []
    for name in names:
        s = stats[name]
        values = np.asarray(lags[name]) if lags[name] else None
        out.append(
            Freshness(
                component=name,
                pending=s.pending,
                instances_waiting=s.instances,
                oldest_wait_s=None if s.oldest_enqueued_at is None else max(0.0, now - s.oldest_enqueued_at),
                failed=s.failed,
                updates=len(lags[name]),
                lag_p50_ms=None if values is None else float(np.percentile(values, 50)),
                lag_p99_ms=None if values is None else float(np.percentile(values, 99)),
            )
        )
    return out
