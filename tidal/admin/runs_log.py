"""The runs log: the latest runs, statistics per component and flow
(counts, errors, latency percentiles, feedback), a timeline of throughput
and update lag, and how the process's runs-log writer is doing."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from ..relations.builtin import Feedback, Run

if TYPE_CHECKING:
    from ..app import App

RUN_STATUSES = ("ok", "error", "discarded")
"""The statuses a run is recorded with."""


@dataclass(frozen=True)
class RunInfo:
    """One row of the runs log."""

    id: str
    component: str
    instance: str
    flow: str
    kind: str
    status: str
    latency_ms: float
    started_at: str | None
    """ISO 8601, UTC."""
    created_at: str | None
    """When the row was written (ISO 8601, UTC)."""
    cached: bool
    version_read: int | None
    version_written: int | None
    op_id: int | None
    waited_ms: float | None
    error: str | None
    props: Any
    result: Any

    def as_dict(self) -> dict[str, Any]:
        """This run as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class RunStats:
    """Runs of one flow of one component (serve and update apart) in a window."""

    component: str
    flow: str
    kind: str
    count: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    feedback_count: int
    """Feedback rows given in the window on this component and flow."""
    feedback_mean_score: float | None

    def as_dict(self) -> dict[str, Any]:
        """These statistics as JSON-ready data."""
        return asdict(self)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # stored in UTC; SQLite returns naive datetimes
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _tables(app: App) -> tuple[sa.Table, sa.Table]:
    if app.runlog is not None:
        app.runlog.flush()
    return app.db.relation(Run).table, app.db.relation(Feedback).table


def runs(
    app: App,
    *,
    component: str | None = None,
    instance: str | None = None,
    flow: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 20,
    after: str | None = None,
) -> list[RunInfo]:
    """The latest ``limit`` runs that match, newest first. With ``after`` (a
    ``created_at`` from an earlier call) only rows written later (what
    ``tidal runs tail --follow`` polls with)."""
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
    if kind is not None and kind not in ("serve", "update"):
        raise ValueError(f"kind must be serve or update, got {kind!r}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    table, _ = _tables(app)
    query = sa.select(table)
    for column, value in (
        ("component", component),
        ("instance", instance),
        ("flow", flow),
        ("status", status),
        ("kind", kind),
    ):
        if value is not None:
            query = query.where(table.c[column] == value)
    if after is not None:
        query = query.where(table.c.created_at > datetime.fromisoformat(after))
    query = query.order_by(table.c.created_at.desc(), table.c.started_at.desc()).limit(limit)
    with app.db.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        RunInfo(
            id=r["id"],
            component=r["component"],
            instance=r["instance"],
            flow=r["flow"],
            kind=r["kind"],
            status=r["status"],
            latency_ms=float(r["latency_ms"] or 0.0),
            started_at=_iso(r["started_at"]),
            created_at=_iso(r["created_at"]),
            cached=bool(r["cached"]),
            version_read=r["version_read"],
            version_written=r["version_written"],
            op_id=r["op_id"],
            waited_ms=r["waited_ms"],
            error=r["error"],
            props=r["props"],
            result=r["result"],
        )
        for r in rows
    ]


def runs_log_health(app: App) -> dict[str, Any] | None:
    """How this process's runs-log writer is doing: ``RunLog.stats()`` as a
    dict (``written``, ``failed``, ``pending``, ``behind_s``, ``alive``,
    ``last_error``, ... and ``healthy``) plus ``warning``, a sentence saying
    what is wrong (see :func:`runs_log_warning`) or None. None when the app
    keeps no runs log (``runs_log=False``).

    The writer is per process: this is the calling process's, the one that
    records the runs this process serves and applies (``/readyz`` and the
    dashboard show the server's)."""
    runlog = app.runlog
    if runlog is None:
        return None
    health = runlog.stats().as_dict()
    health["warning"] = runs_log_warning(health)
    return health


def runs_log_warning(health: dict[str, Any]) -> str | None:
    """What is wrong with a runs-log writer, from its stats as a dict (this
    process's, or another's from its ``/readyz``), or None when nothing is:
    it is dead, behind, retrying after a database error, or runs were not
    stored (``failed``, ``dropped``, ``lost``; these count since the process
    started). The last error is named when there is one."""
    problems = []
    pending = health.get("pending", 0)
    if not health.get("alive", True):
        problems.append(f"the writer is not running ({pending} runs pending)")
    elif not health.get("healthy", True):
        problems.append(f"the writer is {health.get('behind_s', 0.0):.0f} s behind ({pending} runs pending)")
    if health.get("retrying"):
        problems.append("writing fails on a database error and is retried")
    for name, what in (("failed", "could not be stored"), ("dropped", "were dropped (buffer full)"),
                       ("lost", "were lost at shutdown")):  # fmt: skip
        if health.get(name):
            problems.append(f"{health[name]} runs {what}")
    if not problems:
        return None
    text = "; ".join(problems)
    if health.get("last_error"):
        at = health.get("last_error_at")
        when = f" at {datetime.fromtimestamp(at, UTC).isoformat(timespec='seconds')}" if at else ""
        text += f"; last error{when}: {health['last_error']}"
    return text


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if values else None


def run_stats(app: App, *, component: str | None = None, window: timedelta = timedelta(hours=1)) -> list[RunStats]:
    """Per component, flow and kind: runs started in the last ``window``,
    errors, latency percentiles, and the feedback given in the window."""
    runs_table, feedback_table = _tables(app)
    since = datetime.now(UTC) - window
    query = sa.select(
        runs_table.c.component, runs_table.c.flow, runs_table.c.kind, runs_table.c.status, runs_table.c.latency_ms
    ).where(runs_table.c.started_at >= since)
    fb_query = sa.select(feedback_table.c.component, feedback_table.c.flow, feedback_table.c.score).where(
        feedback_table.c.created_at >= since
    )
    if component is not None:
        query = query.where(runs_table.c.component == component)
        fb_query = fb_query.where(feedback_table.c.component == component)
    latencies: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    errors: dict[tuple[str, str, str], int] = defaultdict(int)
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    given: dict[tuple[str, str], int] = defaultdict(int)
    with app.db.connect() as conn:
        for comp, flow, kind, status, latency in conn.execute(query):
            latencies[(comp, flow, kind)].append(float(latency or 0.0))
            errors[(comp, flow, kind)] += status == "error"
        for comp, flow, score in conn.execute(fb_query):
            given[(comp, flow)] += 1
            if score is not None:
                scores[(comp, flow)].append(float(score))
    out = []
    for key in sorted(latencies):
        comp, flow, kind = key
        values = latencies[key]
        # Feedback is on a run of the flow; it is counted on the flow's serve
        # row (or its update row when the flow has no serve runs).
        owner = kind == "serve" or (comp, flow, "serve") not in latencies
        fb = scores[(comp, flow)] if owner else []
        out.append(
            RunStats(
                component=comp,
                flow=flow,
                kind=kind,
                count=len(values),
                errors=errors[key],
                latency_p50_ms=_percentile(values, 50),
                latency_p95_ms=_percentile(values, 95),
                latency_p99_ms=_percentile(values, 99),
                feedback_count=given[(comp, flow)] if owner else 0,
                feedback_mean_score=float(np.mean(fb)) if fb else None,
            )
        )
    return out


@dataclass(frozen=True)
class TimelineBucket:
    """Runs started in one time bucket: throughput, errors and update lag."""

    start: str
    """The bucket's first instant (ISO 8601, UTC)."""
    serves: int
    updates: int
    errors: int
    lag_p50_ms: float | None
    """Median update lag (time queued plus run time) of the bucket's update
    runs, as :func:`tidal.freshness.freshness` measures it; None without any."""
    lag_max_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        """This bucket as JSON-ready data."""
        return asdict(self)


MAX_BUCKETS = 1440
"""The most buckets one timeline may have (a day of minutes)."""


def run_timeline(
    app: App,
    *,
    components: list[str] | None = None,
    window: timedelta = timedelta(hours=1),
    bucket: timedelta = timedelta(minutes=1),
    now: datetime | None = None,
) -> list[TimelineBucket]:
    """Serve and update runs per ``bucket`` over the last ``window`` (of
    ``components``, default all), oldest first. Buckets are aligned to
    multiples of ``bucket`` since the epoch and empty ones are included, so
    a chart's x axis is even::

        for b in admin.run_timeline(app, window=timedelta(hours=1)):
            print(b.start, b.updates, b.lag_p50_ms)
    """
    step = bucket.total_seconds()
    if step <= 0:
        raise ValueError(f"bucket must be positive, got {bucket}")
    if window.total_seconds() <= 0:
        raise ValueError(f"window must be positive, got {window}")
    end = (now or datetime.now(UTC)).timestamp()
    first = (end - window.total_seconds()) // step * step
    count = int((end - first) // step) + 1
    if count > MAX_BUCKETS:
        raise ValueError(f"{count} buckets of {step:g}s in {window}; at most {MAX_BUCKETS}: use larger buckets")
    runs_table, _ = _tables(app)
    query = sa.select(
        runs_table.c.kind, runs_table.c.status, runs_table.c.started_at, runs_table.c.latency_ms, runs_table.c.waited_ms
    ).where(runs_table.c.started_at >= datetime.fromtimestamp(first, UTC))
    if components is not None:
        query = query.where(runs_table.c.component.in_(components))
    serves, updates, errors = [0] * count, [0] * count, [0] * count
    lags: list[list[float]] = [[] for _ in range(count)]
    with app.db.connect() as conn:
        for kind, status, started, latency, waited in conn.execute(query):
            if started.tzinfo is None:  # stored in UTC; SQLite returns naive datetimes
                started = started.replace(tzinfo=UTC)
            index = int((started.timestamp() - first) // step)
            if not 0 <= index < count:
                continue
            errors[index] += status == "error"
            if kind == "serve":
                serves[index] += 1
            else:
                updates[index] += 1
                if waited is not None:
                    lags[index].append(float(waited) + float(latency or 0.0))
    return [
        TimelineBucket(
            start=datetime.fromtimestamp(first + n * step, UTC).isoformat(),
            serves=serves[n],
            updates=updates[n],
            errors=errors[n],
            lag_p50_ms=_percentile(lags[n], 50),
            lag_max_ms=max(lags[n]) if lags[n] else None,
        )
        for n in range(count)
    ]
