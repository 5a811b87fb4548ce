"""Health, readiness, freshness and feedback: ``/healthz``, ``/readyz``,
``/queue``, ``POST /runs/{run_id}/feedback``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...relations.builtin import Run
from ..context import ServerContext
from ..errors import APIError
from ..models import FeedbackRequest
from ..scopes import Principal

READY_PROBE = ("__tidal__", "__ready__")
"""A component/instance pair asked for its version: any answer means the store works."""


class Freshness(BaseModel):
    component: str
    pending: int = Field(description="Update ops queued or running.")
    instances_waiting: int
    oldest_wait_s: float | None
    failed: int
    updates: int = Field(description="Update runs in the window.")
    lag_p50_ms: float | None
    lag_p99_ms: float | None


def _ready(ctx: ServerContext) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for name, probe in (("store", _probe_store), ("database", _probe_db)):
        started = time.perf_counter()
        try:
            probe(ctx)
            checks[name] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}
        except Exception as exc:  # readiness reports any failure, it never raises
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    runlog = ctx.app.runlog
    if runlog is not None:
        # Shown, not required: serving works while the runs log is behind or
        # failing, so it does not take the process out of service.
        stats = runlog.stats()
        checks["runs_log"] = {**stats.as_dict(), "ok": stats.healthy, "required": False}
    return checks


def _probe_store(ctx: ServerContext) -> None:
    ctx.app.store.get_version(*READY_PROBE)


def _probe_db(ctx: ServerContext) -> None:
    import sqlalchemy as sa

    with ctx.app.db.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def _feedback(ctx: ServerContext, run_id: str, body: FeedbackRequest, principal: Principal) -> dict[str, Any]:
    app = ctx.app
    if app.runlog is None:
        raise APIError(409, "no_runs_log", f"app {app.name!r} runs without a runs log (runs_log=False)")
    app.runlog.flush()
    run = app.get(Run, run_id)
    if run is None:
        raise APIError(404, "unknown_run", f"no run {run_id!r} in the runs log of app {app.name!r}")
    principal.require(run.component, run.instance, write=True)
    stored = app.feedback(run_id, score=body.score, label=body.label, comment=body.comment)
    return stored.model_dump(mode="json")


def router(ctx: ServerContext) -> APIRouter:
    api = APIRouter(tags=["operations"])

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process answers (no auth; checks nothing else)."""
        # async: answered on the event loop, with no trip to a worker thread
        return {"status": "ok", "app": ctx.app.name}

    @api.get("/readyz", responses={503: {"description": "The store or the database does not answer."}})
    async def readyz() -> JSONResponse:
        """The store and the relations database answer (no auth); the runs
        log's writer counters are shown under ``checks.runs_log`` (``ok``
        false when it is dead or behind, without making this 503)."""
        checks = await run_in_threadpool(_ready, ctx)
        ok = all(c["ok"] for c in checks.values() if c.get("required", True))
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
        )

    @api.get("/queue", response_model=list[Freshness])
    def queue(
        component: list[str] | None = Query(None, description="Only these components."),
        window_s: float = Query(300.0, gt=0, le=86_400, description="Seconds of update runs to measure lag over."),
        principal: Principal = Depends(ctx.principal),
    ) -> list[dict[str, Any]]:
        """Queue depth and update lag per component (``app.freshness()``)."""
        from datetime import timedelta

        names = component
        if names is not None:
            for name in names:
                ctx.component(name, principal)
        else:
            names = sorted(n for n, c in ctx.app.components.items() if c.runs_in_background)
        names = [n for n in names if principal.can(n)]
        return [row.as_dict() for row in ctx.app.freshness(names, timedelta(seconds=window_s))]

    @api.post("/runs/{run_id}/feedback", status_code=201, responses={404: {"description": "Unknown run."}})
    def feedback(
        run_id: str,
        body: FeedbackRequest,
        principal: Principal = Depends(ctx.principal),
    ) -> dict[str, Any]:
        """Give feedback on a run (``app.feedback``); stored in the ``feedback`` relation."""
        return _feedback(ctx, run_id, body, principal)

    return api
