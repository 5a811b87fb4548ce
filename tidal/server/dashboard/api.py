"""The dashboard's data: JSON under ``/dashboard/api/``, read from and acted
on through :mod:`tidal.admin`, with the API's auth.

Reading needs a key (or JWT) whose scope reaches the component (and, for
instance data, the instance); retry, drop and rollback need write on the
instance. Lists show only what the caller's scope reaches. Aggregates
(queue depth, lag, run statistics, the timeline, model usage per model and
per flow) are per component; model usage per instance and day, and a run's
model calls, list only the instances the caller reaches.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from ... import admin
from ...exceptions import NotFoundError, StateIntegrityError
from ..context import INSTANCE_PATTERN, ServerContext
from ..errors import APIError
from ..scopes import OPEN, Principal

INSTANCES_SHOWN = 200
"""Instances listed on a component's page at most."""

FAILURES_SHOWN = 100
"""Failed ops listed per component at most."""

INSTANCE_DAYS_SHOWN = 200
"""Rows of model usage per instance and day listed at most by default."""

MODEL_WINDOW_MAX_S = 90 * 86_400
"""The longest window of model usage one request may ask for."""

_Instance = Path(pattern=INSTANCE_PATTERN)


class RollbackRequest(BaseModel):
    key: str = Field(min_length=1, description="The state key to restore.")
    version: int = Field(ge=0, description="The key's version to restore (from its history).")


def _session(ctx: ServerContext, request: Request) -> dict[str, Any]:
    """Who the caller is, without failing: the login page asks this first."""
    body: dict[str, Any] = {"app": ctx.app.name, "auth_required": ctx.auth is not None, "error": None}
    principal: Principal | None = OPEN
    if ctx.auth is not None:
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
        try:
            principal = ctx.auth.authenticate(bearer, request.headers.get("x-api-key"))
        except APIError as exc:
            principal = None
            if bearer or request.headers.get("x-api-key"):
                body["error"] = exc.message
    body["authenticated"] = principal is not None
    body["principal"] = None
    if principal is not None:
        write = principal.scope is None or principal.scope.write
        body["principal"] = {"kind": principal.kind, "name": principal.name, "write": write}
    return body


def _readable(ctx: ServerContext, principal: Principal) -> list[str]:
    return sorted(name for name in ctx.app.components if principal.can(name))


def _freshness(ctx: ServerContext, names: list[str], window_s: float) -> dict[str, dict[str, Any]]:
    background = [n for n in names if ctx.app.components[n].runs_in_background]
    rows = admin.queues(ctx.app, background, timedelta(seconds=window_s)) if background else []
    return {row.component: row.as_dict() for row in rows}


def _instances(ctx: ServerContext, comp: str, principal: Principal) -> tuple[list[dict[str, Any]], bool]:
    ids = [i for i in sorted(ctx.app.store.list_instances(comp)) if principal.can(comp, i)]
    out = []
    for instance in ids[:INSTANCES_SHOWN]:
        try:
            state = admin.state(ctx.app, comp, instance)
        except NotFoundError:  # deleted meanwhile
            continue
        out.append({"instance": instance, "version": state.version, "keys": len(state.keys), "size": state.size})
    return out, len(ids) > INSTANCES_SHOWN


def _failures(ctx: ServerContext, comp: str, principal: Principal, instance: str | None = None) -> list[dict[str, Any]]:
    found = admin.failures(ctx.app, comp, instance=instance, limit=FAILURES_SHOWN)
    return [{**f.as_dict(), "summary": f.summary} for f in found if principal.can(comp, f.instance)]


def _scoped(ctx: ServerContext, principal: Principal) -> list[str] | None:
    """The components a scoped caller reads; None (all, calls made outside
    any component included) for an unscoped one."""
    return None if principal.scope is None else _readable(ctx, principal)


def _with_model_totals(ctx: ServerContext, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    totals = admin.run_model_totals(ctx.app, [r["id"] for r in runs])
    for r in runs:
        found = totals.get(r["id"])
        r["models"] = None if found is None else {"calls": found.calls, "tokens": found.tokens, "cost": found.cost}
    return runs


def router(ctx: ServerContext) -> APIRouter:
    """The dashboard's JSON routes, for :func:`tidal.server.dashboard.install`."""
    api = APIRouter(prefix="/dashboard/api", tags=["dashboard"])

    def instance_of(component: str, instance: str, principal: Principal, *, write: bool = False) -> None:
        comp = ctx.component(component, principal)
        principal.require(comp.name, instance, write=write)
        ctx.instance_version(comp, instance, principal)

    @api.get("/session")
    def session(request: Request) -> dict[str, Any]:
        """The app's name, whether auth is on, and who the credentials sent
        (if any) belong to; never 401 (the page shows its login from this)."""
        return _session(ctx, request)

    @api.get("/overview")
    def overview(
        window_s: float = Query(300.0, gt=0, le=86_400, description="Seconds of update runs to measure lag over."),
        principal: Principal = Depends(ctx.principal),
    ) -> dict[str, Any]:
        """Components the caller may read, with their flows, instance
        counts and freshness (queue depth, lag, failed ops)."""
        names = _readable(ctx, principal)
        fresh = _freshness(ctx, names, window_s)
        comps = [{**admin.component(ctx.app, n).as_dict(), "freshness": fresh.get(n)} for n in names]
        return {"app": ctx.app.name, "components": comps}

    @api.get("/components/{component}")
    def component(component: str, principal: Principal = Depends(ctx.principal)) -> dict[str, Any]:
        """One component: flows, freshness, and its instances with state
        version, key count and size (those the caller may read)."""
        comp = ctx.component(component, principal)
        principal.require(comp.name)
        shown, truncated = _instances(ctx, comp.name, principal)
        return {
            "component": admin.component(ctx.app, comp.name).as_dict(),
            "freshness": _freshness(ctx, [comp.name], 300.0).get(comp.name),
            "instances": shown,
            "truncated": truncated,
        }

    @api.get("/components/{component}/instances/{instance}")
    def instance(
        component: str, instance: str = _Instance, principal: Principal = Depends(ctx.principal)
    ) -> dict[str, Any]:
        """An instance's state keys (version, size, when written, a value
        preview) and its failed ops."""
        instance_of(component, instance, principal)
        state = admin.state(ctx.app, component, instance, values=True)
        return {
            "state": {**state.as_dict(), "size": state.size},
            "failures": _failures(ctx, component, principal, instance),
        }

    @api.get("/components/{component}/instances/{instance}/history")
    def history(
        component: str,
        instance: str = _Instance,
        key: str = Query(min_length=1, description="The state key."),
        limit: int = Query(20, ge=1, le=1000),
        principal: Principal = Depends(ctx.principal),
    ) -> list[dict[str, Any]]:
        """The versions of one state key kept in history, newest first."""
        instance_of(component, instance, principal)
        return [v.as_dict() for v in admin.key_history(ctx.app, component, instance, key, limit=limit)]

    @api.post("/components/{component}/instances/{instance}/rollback")
    def rollback(
        body: RollbackRequest,
        component: str,
        instance: str = _Instance,
        principal: Principal = Depends(ctx.principal),
    ) -> dict[str, Any]:
        """Restore a key to an earlier version, as a new version (write)."""
        instance_of(component, instance, principal, write=True)
        try:
            return admin.rollback(ctx.app, component, instance, body.key, body.version).as_dict()
        except StateIntegrityError as exc:
            raise APIError(
                409, "state_integrity", f"refusing to roll back, nothing was written: {exc}", version=body.version
            ) from None

    @api.get("/queue")
    def queue(
        window_s: float = Query(300.0, gt=0, le=86_400, description="Seconds of update runs to measure lag over."),
        principal: Principal = Depends(ctx.principal),
    ) -> dict[str, Any]:
        """Queue depth and lag per component, and the failed ops (newest
        first) with their tracebacks."""
        names = _readable(ctx, principal)
        fresh = _freshness(ctx, names, window_s)
        failures = [f for n in names for f in _failures(ctx, n, principal)]
        failures.sort(key=lambda f: f["failed_at"], reverse=True)
        return {"components": [fresh[n] for n in names if n in fresh], "failures": failures}

    def failed_op(component: str, instance: str, principal: Principal) -> None:
        comp = ctx.component(component, principal)
        principal.require(comp.name, instance, write=True)

    @api.post("/components/{component}/instances/{instance}/failures/{op_id}/retry")
    def retry(
        component: str, op_id: int, instance: str = _Instance, principal: Principal = Depends(ctx.principal)
    ) -> dict[str, Any]:
        """Queue a failed op again (write); it runs as a new op."""
        failed_op(component, instance, principal)
        return admin.retry_failed(ctx.app, component, op_id, instance=instance).as_dict()

    @api.post("/components/{component}/instances/{instance}/failures/{op_id}/drop")
    def drop(
        component: str, op_id: int, instance: str = _Instance, principal: Principal = Depends(ctx.principal)
    ) -> dict[str, Any]:
        """Forget a failed op (write); returns it as it was."""
        failed_op(component, instance, principal)
        return admin.drop_failed(ctx.app, component, op_id, instance=instance).as_dict()

    @api.get("/runs")
    def runs(
        component: str | None = Query(None),
        status: Literal["ok", "error", "discarded"] | None = Query(None),
        kind: Literal["serve", "update"] | None = Query(None),
        limit: int = Query(50, ge=1, le=1000),
        principal: Principal = Depends(ctx.principal),
    ) -> list[dict[str, Any]]:
        """The latest runs, newest first (those of instances the caller may read)."""
        if component is not None:
            principal.require(component)
        found = admin.runs(ctx.app, component=component, status=status, kind=kind, limit=limit)
        shown = [r.as_dict() for r in found if principal.can(r.component, r.instance)]
        return _with_model_totals(ctx, shown)

    @api.get("/runs/{run_id}/models")
    def run_models(
        run_id: str,
        limit: int = Query(100, ge=1, le=1000),
        principal: Principal = Depends(ctx.principal),
    ) -> list[dict[str, Any]]:
        """The model calls made in one run, newest first (empty for a run
        that called no model, or one the caller may not read)."""
        found = admin.calls_of_run(ctx.app, run_id, limit=limit)
        return [c.as_dict() for c in found if principal.can(c.component, c.instance)]

    @api.get("/models/usage")
    def models_usage(
        window_s: float = Query(86_400.0, ge=1, le=MODEL_WINDOW_MAX_S, description="Seconds of model calls."),
        by: Literal["model", "flow", "instance-day"] | None = Query(None, description="Only this grouping."),
        limit: int = Query(INSTANCE_DAYS_SHOWN, ge=1, le=100_000, description="Instance-day rows at most."),
        principal: Principal = Depends(ctx.principal),
    ) -> dict[str, Any]:
        """Model calls over the window: per model and per component and flow
        (calls, errors, tokens, cost, latency p50/p95, time to first token,
        cache hits, retries), and per instance and day (calls, tokens, cost;
        the costliest of the newest day first, ``truncated`` past ``limit``).
        Only the groupings asked for with ``by`` (default: all three)."""
        window, names = timedelta(seconds=window_s), _scoped(ctx, principal)
        body: dict[str, Any] = {"window_s": window_s}
        if by in (None, "model"):
            body["models"] = [u.as_dict() for u in admin.usage_by_model(ctx.app, window=window, components=names)]
        if by in (None, "flow"):
            body["flows"] = [u.as_dict() for u in admin.usage_by_flow(ctx.app, window=window, components=names)]
        if by in (None, "instance-day"):
            days = admin.usage_by_instance_day(ctx.app, window=window, components=names)
            days = [d for d in days if principal.can(d.component, d.instance)]
            body["instance_days"] = [d.as_dict() for d in days[:limit]]
            body["truncated"] = len(days) > limit
        return body

    @api.get("/components/{component}/models")
    def component_models(
        component: str,
        window_s: float = Query(86_400.0, ge=1, le=MODEL_WINDOW_MAX_S, description="Seconds of model calls."),
        principal: Principal = Depends(ctx.principal),
    ) -> dict[str, Any]:
        """One component's model calls over the window: per flow and per model."""
        comp = ctx.component(component, principal)
        principal.require(comp.name)
        window, names = timedelta(seconds=window_s), [comp.name]
        return {
            "window_s": window_s,
            "flows": [u.as_dict() for u in admin.usage_by_flow(ctx.app, window=window, components=names)],
            "models": [u.as_dict() for u in admin.usage_by_model(ctx.app, window=window, components=names)],
        }

    @api.get("/stats")
    def stats(
        window_s: float = Query(3600.0, gt=0, le=7 * 86_400),
        principal: Principal = Depends(ctx.principal),
    ) -> list[dict[str, Any]]:
        """Per component, flow and kind: runs, errors, latency p50/p95/p99
        and feedback over the window."""
        found = admin.run_stats(ctx.app, window=timedelta(seconds=window_s))
        return [s.as_dict() for s in found if principal.can(s.component)]

    @api.get("/runs-log")
    def runs_log(principal: Principal = Depends(ctx.principal)) -> dict[str, Any]:
        """How the server's runs-log writer is doing (what ``/readyz`` shows
        under ``checks.runs_log``): written, failed, pending, behind_s,
        alive, the last error, ``healthy``, and ``warning`` (what is wrong,
        or null). ``runs_log`` is null when the app keeps no runs log."""
        return {"runs_log": admin.runs_log_health(ctx.app)}

    @api.get("/timeline")
    def timeline(
        component: list[str] | None = Query(None, description="Only these components."),
        window_s: float = Query(3600.0, gt=0, le=86_400),
        bucket_s: float = Query(60.0, ge=1, le=86_400),
        principal: Principal = Depends(ctx.principal),
    ) -> list[dict[str, Any]]:
        """Serves, updates, errors and update lag per time bucket."""
        if component is not None:
            for name in component:
                principal.require(name)
        names = component
        if names is None and principal.scope is not None:
            names = _readable(ctx, principal)
        window, bucket = timedelta(seconds=window_s), timedelta(seconds=bucket_s)
        try:
            found = admin.run_timeline(ctx.app, components=names, window=window, bucket=bucket)
        except ValueError as exc:
            raise APIError(422, "too_many_buckets", str(exc)) from None
        return [b.as_dict() for b in found]

    return api
