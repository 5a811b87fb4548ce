"""Model usage: what the model calls of the ``model_calls`` relation cost,
how many tokens they used and how fast they answered, per model, per
component and flow, and per instance and day (cost per user per day); the
calls of one run, and their totals per run for the runs log's listings.

Aggregates read the window's rows with one query and sum them in Python,
so SQLite and PostgreSQL give the same numbers (percentiles included)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from ..relations.builtin import ModelCall
from .common import AsDict

if TYPE_CHECKING:
    from ..app import App

DEFAULT_WINDOW = timedelta(days=1)
"""The window the aggregates look at when given none."""

CALLS_SHOWN = 100
"""Calls of one run listed at most (newest first)."""

GROUPINGS = ("model", "flow", "instance-day")
"""How ``tidal models usage --by`` and the HTTP route group the calls."""


@dataclass
class _Tally:
    calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0
    retries: int = 0
    cache_hits: int = 0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)

    def add(self, row: Any) -> None:
        self.calls += 1
        self.errors += row.status == "error"
        self.prompt_tokens += int(row.prompt_tokens or 0)
        self.completion_tokens += int(row.completion_tokens or 0)
        self.cached_tokens += int(row.cached_tokens or 0)
        self.cost += float(row.cost or 0.0)
        self.retries += int(row.retries or 0)
        self.cache_hits += row.cache_hit is not None
        self.latencies.append(float(row.latency_ms or 0.0))
        if row.ttft_ms is not None:
            self.ttfts.append(float(row.ttft_ms))


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if values else None


@dataclass(frozen=True)
class ModelUsage(AsDict):
    """Model calls of one group in a window: one model (``model`` set, the
    others None) or one component's flow (``component`` and ``flow`` set)."""

    model: str | None
    component: str | None
    flow: str | None
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    """Prompt tokens the provider served from its prompt cache."""
    tokens: int
    """Prompt plus completion tokens."""
    cost: float
    """US dollars."""
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_p50_ms: float | None
    """Median time to the first token of the streamed calls; None without any."""
    cache_hits: int
    """Calls answered from Tidal's cache (exact or semantic)."""
    cache_hit_rate: float
    """``cache_hits / calls``."""
    retries: int


def _usage(tally: _Tally, *, model: str | None = None, component: str | None = None,
           flow: str | None = None) -> ModelUsage:  # fmt: skip
    return ModelUsage(
        model=model,
        component=component,
        flow=flow,
        calls=tally.calls,
        errors=tally.errors,
        prompt_tokens=tally.prompt_tokens,
        completion_tokens=tally.completion_tokens,
        cached_tokens=tally.cached_tokens,
        tokens=tally.prompt_tokens + tally.completion_tokens,
        cost=tally.cost,
        latency_p50_ms=_percentile(tally.latencies, 50),
        latency_p95_ms=_percentile(tally.latencies, 95),
        ttft_p50_ms=_percentile(tally.ttfts, 50),
        cache_hits=tally.cache_hits,
        cache_hit_rate=tally.cache_hits / tally.calls if tally.calls else 0.0,
        retries=tally.retries,
    )


@dataclass(frozen=True)
class InstanceDayUsage(AsDict):
    """Model calls of one instance (a user, a document…) of a component on
    one day (UTC): the "cost per user per day" question."""

    component: str
    instance: str
    day: str
    """``YYYY-MM-DD``, UTC."""
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    cost: float


@dataclass(frozen=True)
class ModelCallInfo(AsDict):
    """One row of ``model_calls``."""

    id: str
    run_id: str
    component: str
    instance: str
    flow: str
    model: str
    endpoint: str
    operation: str
    status: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost: float
    latency_ms: float
    ttft_ms: float | None
    retries: int
    cache_hit: str | None
    similarity: float | None
    params: Any
    error: str | None
    started_at: str | None
    """ISO 8601, UTC."""
    parent_call: str | None
    note: Any


@dataclass(frozen=True)
class RunModelTotals(AsDict):
    """What the model calls of one run add up to."""

    run_id: str
    calls: int
    tokens: int
    cost: float


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # stored in UTC; SQLite returns naive datetimes
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


REQUESTS = ("chat", "completion", "embedding")
"""Operations that are requests to a model (counted as calls); the other
rows of ``model_calls`` record what the client decided or ran (``tool``,
``decision``) and cost nothing themselves."""


def _table(app: App) -> sa.Table:
    app.flush_runs()  # only when something is buffered: a dashboard poll must not take the writer's lock
    return app.db.relation(ModelCall).table


def _when(table: sa.Table) -> sa.ColumnElement[datetime]:
    # A call written without started_at counts when it was written.
    return sa.func.coalesce(table.c.started_at, table.c.created_at, type_=table.c.created_at.type)


def _window_rows(
    app: App, columns: Iterable[str], window: timedelta, components: list[str] | None, now: datetime | None
) -> list[Any]:
    if window.total_seconds() <= 0:
        raise ValueError(f"window must be positive, got {window}")
    table = _table(app)
    when = _when(table)
    since = (now or datetime.now(UTC)) - window
    query = (
        sa.select(*(table.c[c] for c in columns), when.label("at"))
        .where(when >= since)
        .where(table.c.operation.in_(REQUESTS))
    )
    if components is not None:
        query = query.where(table.c.component.in_(components))
    with app.db.connect() as conn:
        return list(conn.execute(query))


_MEASURES = ("status", "prompt_tokens", "completion_tokens", "cached_tokens", "cost", "retries", "cache_hit",
             "latency_ms", "ttft_ms")  # fmt: skip


def usage_by_model(
    app: App,
    *,
    window: timedelta = DEFAULT_WINDOW,
    components: list[str] | None = None,
    now: datetime | None = None,
) -> list[ModelUsage]:
    """Per model, the calls made in the last ``window`` (of ``components``,
    default all): errors, tokens, cost, latency p50/p95, time to first
    token, cache hits and retries; the costliest model first::

        for m in admin.usage_by_model(app, window=timedelta(days=7)):
            print(m.model, m.calls, f"${m.cost:.2f}", m.latency_p95_ms)
    """
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for row in _window_rows(app, ("model", *_MEASURES), window, components, now):
        tallies[row.model].add(row)
    found = [_usage(t, model=name) for name, t in tallies.items()]
    return sorted(found, key=lambda u: (-u.cost, u.model or ""))


def usage_by_flow(
    app: App,
    *,
    window: timedelta = DEFAULT_WINDOW,
    components: list[str] | None = None,
    now: datetime | None = None,
) -> list[ModelUsage]:
    """Per component and flow, the model calls made in the last ``window``
    by its runs (the same measures as :func:`usage_by_model`), by component
    then flow. Calls made outside any flow have an empty component and flow."""
    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    for row in _window_rows(app, ("component", "flow", *_MEASURES), window, components, now):
        tallies[(row.component, row.flow)].add(row)
    return [_usage(tallies[key], component=key[0], flow=key[1]) for key in sorted(tallies)]


def usage_by_instance_day(
    app: App,
    *,
    window: timedelta = DEFAULT_WINDOW,
    components: list[str] | None = None,
    now: datetime | None = None,
) -> list[InstanceDayUsage]:
    """Per component, instance and day (UTC): the calls, tokens and cost of
    the last ``window``; newest day first, then the costliest instance::

        for u in admin.usage_by_instance_day(app, window=timedelta(days=30)):
            print(u.day, u.instance, f"${u.cost:.4f}")
    """
    tallies: dict[tuple[str, str, str], _Tally] = defaultdict(_Tally)
    for row in _window_rows(app, ("component", "instance", *_MEASURES), window, components, now):
        at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
        tallies[(row.component, row.instance, at.astimezone(UTC).date().isoformat())].add(row)
    found = [
        InstanceDayUsage(
            component=comp,
            instance=instance,
            day=day,
            calls=t.calls,
            errors=t.errors,
            prompt_tokens=t.prompt_tokens,
            completion_tokens=t.completion_tokens,
            tokens=t.prompt_tokens + t.completion_tokens,
            cost=t.cost,
        )
        for (comp, instance, day), t in tallies.items()
    ]
    found.sort(key=lambda u: (u.component, u.instance, u.day))
    found.sort(key=lambda u: (u.day, u.cost), reverse=True)
    return found


def calls_of_run(app: App, run_id: str, *, limit: int = CALLS_SHOWN) -> list[ModelCallInfo]:
    """The latest ``limit`` model calls made in run ``run_id``, newest
    first (none for a run that called no model)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    table = _table(app)
    when = _when(table)
    query = sa.select(table).where(table.c.run_id == run_id).order_by(when.desc(), table.c.id.desc()).limit(limit)
    with app.db.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        ModelCallInfo(
            id=r["id"],
            run_id=r["run_id"],
            component=r["component"],
            instance=r["instance"],
            flow=r["flow"],
            model=r["model"],
            endpoint=r["endpoint"],
            operation=r["operation"],
            status=r["status"],
            prompt_tokens=int(r["prompt_tokens"] or 0),
            completion_tokens=int(r["completion_tokens"] or 0),
            cached_tokens=int(r["cached_tokens"] or 0),
            cost=float(r["cost"] or 0.0),
            latency_ms=float(r["latency_ms"] or 0.0),
            ttft_ms=r["ttft_ms"],
            retries=int(r["retries"] or 0),
            cache_hit=r["cache_hit"],
            similarity=r["similarity"],
            params=r["params"],
            error=r["error"],
            started_at=_iso(r["started_at"]),
            parent_call=r["parent_call"],
            note=r["note"],
        )
        for r in rows
    ]


def run_model_totals(app: App, run_ids: Iterable[str]) -> dict[str, RunModelTotals]:
    """Calls, tokens and cost of the model calls of each run in ``run_ids``
    (one grouped query); runs that called no model are left out."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    table = _table(app)
    query = (
        sa.select(
            table.c.run_id,
            sa.func.count(),
            sa.func.sum(table.c.prompt_tokens + table.c.completion_tokens),
            sa.func.sum(table.c.cost),
        )
        .where(table.c.run_id.in_(ids))
        .where(table.c.operation.in_(REQUESTS))
        .group_by(table.c.run_id)
    )
    with app.db.connect() as conn:
        rows = conn.execute(query).all()
    return {
        run_id: RunModelTotals(run_id=run_id, calls=int(calls), tokens=int(tokens or 0), cost=float(cost or 0.0))
        for run_id, calls, tokens, cost in rows
    }
