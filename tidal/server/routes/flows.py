"""Running flows: ``POST /components/{c}/instances/{i}/flows/{f}`` (the
result) and ``…/stream`` (NDJSON, one line per item of a generator op).

Each flow known when the API is made gets routes of its own, so that the
OpenAPI document shows its props; generic routes after them serve flows
added later and answer 404 with the known names for unknown ones."""

# No `from __future__ import annotations`: the per-flow body models are
# local variables that FastAPI must see as real annotations.

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from ...component import Component
from ...context import caller_scope
from ...core.props import validate_props
from ...engine.runlog import jsonable
from ...exceptions import MissingPropError, PropsValidationError, StateIntegrityError, UpdateFailedError
from ...instance import Instance
from ...relations.validation import json_problem
from ..context import INSTANCE_PATTERN, SAFE_NAME, ServerContext, runnable_flows
from ..errors import APIError, log
from ..models import RunRequest, RunResult, flow_request_model
from ..scopes import Principal

NDJSON = "application/x-ndjson"
ASYNC_KINDS = ("async", "agen")


def _open(ctx: ServerContext, comp: Component, instance: str, flow: str, principal: Principal, body: BaseModel) -> Any:
    """Checks that come before anything is written, in order: scope, props,
    options, instance existence. Returns the validated props."""
    writes = flow in comp.update_routes
    principal.require(comp.name, instance, write=writes)
    props: Any = getattr(body, "props", None)
    if isinstance(props, BaseModel):
        props = props.model_dump()
    _check_props(ctx, props)
    schema = comp.props_schemas.get(flow)
    if schema is not None:
        props = validate_props(schema, props or {}, f"{comp.name}.{flow}")
    if getattr(body, "flush_update", False) and not ctx.run_updates:
        raise APIError(
            409,
            "updates_elsewhere",
            "this server leaves updates to `tidal worker` (--no-updates); flush_update is not available here",
        )
    if ctx.app.store.get_version(comp.name, instance) is None:
        if not ctx.create_instances:
            ctx.instance_version(comp, instance, principal)  # 404 with the known ones
        principal.require(comp.name, instance, write=True)  # creating one is a write
    return dict(props or {})


def _check_props(ctx: ServerContext, props: Any) -> None:
    """422 naming the place in ``props`` that no op, runs log or store could
    take as JSON: nesting past the limit, text that is not UTF-8, integers
    past 64 bits."""
    bad = json_problem(props, ctx.max_props_depth) if props is not None else None
    if bad is not None:
        where, why = bad
        loc = ["body", "props", *(where.split(".") if where else [])]
        shown = ".".join(loc) if len(loc) <= 12 else ".".join(loc[:12]) + f"…({len(loc) - 12} more)"
        detail = [{"loc": loc, "msg": why, "type": "value_error"}]
        raise APIError(422, "validation_error", f"{shown}: {why}; nothing was run", detail=detail)


def _instance(ctx: ServerContext, comp: Component, instance: str) -> Instance:
    return comp(instance, disable_update_task=not ctx.run_updates)


def _failed(comp: Component, instance: str, flow: str, exc: Exception) -> APIError:
    log.exception("flow %s of %s/%s failed", flow, comp.name, instance)
    return APIError(
        500, "op_failed", f"flow {flow!r} of {comp.name}/{instance} raised {type(exc).__name__}: {exc}", flow=flow
    )


def _answer(comp: Component, instance: str, flow: str, result: Any, run_id: str | None, version: int) -> JSONResponse:
    body = {"component": comp.name, "instance": instance, "flow": flow, "result": jsonable(result)}
    return JSONResponse({**body, "run_id": run_id, "version": version})


async def run_flow(
    ctx: ServerContext, comp: Component, instance: str, flow: str, body: BaseModel, principal: Principal
) -> JSONResponse:
    """Run ``flow`` on ``instance`` and answer its result, run id and version.

    A sync op takes one trip to a worker thread for the checks, the run and
    the version (each trip costs a GIL hand-over, some 0.1 ms or more under
    load); an async op is checked and opened in one, run on the event loop."""
    # What the op does on the caller's behalf (a model's tool calls) stays
    # within the caller's scope. Set in this request's own task context,
    # which worker-thread calls copy.
    caller_scope.set(principal.scope)
    opts = {k: bool(getattr(body, k, False)) for k in ("ignore_cache", "force_refresh", "flush_update")}
    serve = comp.serve_routes.get(flow)
    if serve is not None and serve.kind in ASYNC_KINDS:

        def opened() -> tuple[Any, Instance]:
            props = _open(ctx, comp, instance, flow, principal, body)
            try:
                return props, _instance(ctx, comp, instance)
            except _PASSED_ON:
                raise
            except Exception as exc:
                raise _failed(comp, instance, flow, exc) from exc

        props, inst = await run_in_threadpool(opened)
        try:
            result = await inst.arun(flow, props, **opts)
            run_id = inst.last_run_id
            version = await run_in_threadpool(inst.get_version)
        except _PASSED_ON:
            raise  # the caller's mistake, or updates failing: answered by their handlers
        except Exception as exc:
            raise _failed(comp, instance, flow, exc) from exc
        return _answer(comp, instance, flow, result, run_id, version)

    def call() -> tuple[Any, str | None, int]:
        props = _open(ctx, comp, instance, flow, principal, body)  # its errors go to their handlers
        try:
            inst = _instance(ctx, comp, instance)
            out = inst.run(flow, props, **opts)
            return out, inst.last_run_id, inst.get_version()
        except _PASSED_ON:
            raise
        except Exception as exc:
            raise _failed(comp, instance, flow, exc) from exc

    result, run_id, version = await run_in_threadpool(call)
    return _answer(comp, instance, flow, result, run_id, version)


_PASSED_ON = (MissingPropError, PropsValidationError, UpdateFailedError, StateIntegrityError, APIError)
"""Errors a run lets through to their handlers (the caller's mistake, or
updates failing); any other is answered as the op failing (500 op_failed)."""


def _line(data: Any) -> bytes:
    return orjson.dumps(data) + b"\n"


async def stream_flow(
    ctx: ServerContext, comp: Component, instance: str, flow: str, body: BaseModel, principal: Principal
) -> StreamingResponse:
    """Run ``flow`` and stream NDJSON: ``{"item": …}`` per item, then
    ``{"done": true, "run_id": …, "version": …}``, or ``{"error": …}`` if
    the op fails midway."""
    caller_scope.set(principal.scope)  # as in run_flow
    props = await run_in_threadpool(_open, ctx, comp, instance, flow, principal, body)
    opts = {k: bool(getattr(body, k, False)) for k in ("ignore_cache", "force_refresh", "flush_update")}
    inst = await run_in_threadpool(_instance, ctx, comp, instance)
    serve = comp.serve_routes.get(flow)

    def error_line(exc: Exception) -> bytes:
        if isinstance(exc, MissingPropError):
            return _line({"error": "validation_error", "message": str(exc)})
        failed = _failed(comp, instance, flow, exc)
        return _line({"error": failed.code, "message": failed.message})

    if serve is not None and serve.kind in ASYNC_KINDS:

        async def alines() -> AsyncIterator[bytes]:
            try:
                async for item in inst.agen(flow, props, **opts):
                    yield _line({"item": jsonable(item)})
                run_id = inst.last_run_id
                version = await asyncio.to_thread(inst.get_version)
            except Exception as exc:
                yield error_line(exc)
                return
            yield _line({"done": True, "run_id": run_id, "version": version})

        return StreamingResponse(alines(), media_type=NDJSON)

    def lines() -> Iterator[bytes]:
        # Starlette runs each step in a worker thread; the run id is read in
        # the step that finished the run, where the instance recorded it.
        try:
            for item in inst.gen(flow, props, **opts):
                yield _line({"item": jsonable(item)})
            run_id, version = inst.last_run_id, inst.get_version()
        except Exception as exc:
            yield error_line(exc)
            return
        yield _line({"done": True, "run_id": run_id, "version": version})

    return StreamingResponse(lines(), media_type=NDJSON)


_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {NDJSON: {}}, "description": "NDJSON: {item} lines, then {done, run_id, version}."}
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown component, flow or instance; the body lists the known names."},
    413: {"description": "Request body over the size limit."},
    422: {"description": "Props or options failing validation; the body names the field."},
}

Handler = Callable[..., Any]


def _flow_routes(ctx: ServerContext, router: APIRouter, comp: Component, flow: str, model: type[BaseModel]) -> None:
    name = comp.name
    base = f"/components/{name}/instances/{{instance}}/flows/{flow}"
    has_props = model is not RunRequest
    body_default: Any = ... if has_props and "props" in model.model_json_schema().get("required", []) else None

    async def run(
        instance: str = Path(pattern=INSTANCE_PATTERN),
        body: model = Body(body_default),  # type: ignore[valid-type]
        principal: Principal = Depends(ctx.principal),
    ) -> JSONResponse:
        return await run_flow(ctx, ctx.component(name, principal), instance, flow, body or model(), principal)

    async def stream(
        instance: str = Path(pattern=INSTANCE_PATTERN),
        body: model = Body(body_default),  # type: ignore[valid-type]
        principal: Principal = Depends(ctx.principal),
    ) -> StreamingResponse:
        return await stream_flow(ctx, ctx.component(name, principal), instance, flow, body or model(), principal)

    tag = f"component {name}"
    router.add_api_route(
        base,
        run,
        methods=["POST"],
        response_model=RunResult,
        responses=_ERRORS,
        tags=[tag],
        summary=f"Run {name}.{flow}",
        operation_id=f"run_{name}_{flow}",
    )
    router.add_api_route(
        base + "/stream",
        stream,
        methods=["POST"],
        response_class=StreamingResponse,
        responses={**_STREAM_DOC, **_ERRORS},
        tags=[tag],
        summary=f"Run {name}.{flow}, streaming its items",
        operation_id=f"stream_{name}_{flow}",
    )


def router(ctx: ServerContext) -> APIRouter:
    """The flow routes of every component of ``ctx.app``, then the generic ones."""
    api = APIRouter()
    taken: set[str] = set()
    for name, comp in sorted(ctx.app.components.items()):
        if not SAFE_NAME.match(name):
            continue
        for flow in runnable_flows(comp):
            if SAFE_NAME.match(flow):
                _flow_routes(ctx, api, comp, flow, flow_request_model(comp, flow, taken))

    generic = "/components/{component}/instances/{instance}/flows/{flow}"

    async def run_any(
        component: str,
        flow: str,
        instance: str = Path(pattern=INSTANCE_PATTERN),
        body: RunRequest | None = None,
        principal: Principal = Depends(ctx.principal),
    ) -> JSONResponse:
        """Run any flow (those added after the API was made, or with names
        that cannot appear in a path); props as declared by the flow."""
        comp = ctx.component(component, principal)
        ctx.flow(comp, flow)
        return await run_flow(ctx, comp, instance, flow, body or RunRequest.model_validate({}), principal)

    async def stream_any(
        component: str,
        flow: str,
        instance: str = Path(pattern=INSTANCE_PATTERN),
        body: RunRequest | None = None,
        principal: Principal = Depends(ctx.principal),
    ) -> StreamingResponse:
        """``run_any``, streamed as NDJSON."""
        comp = ctx.component(component, principal)
        ctx.flow(comp, flow)
        return await stream_flow(ctx, comp, instance, flow, body or RunRequest.model_validate({}), principal)

    api.add_api_route(generic, run_any, methods=["POST"], response_model=RunResult, responses=_ERRORS, tags=["flows"])
    api.add_api_route(
        generic + "/stream",
        stream_any,
        methods=["POST"],
        response_class=StreamingResponse,
        responses={**_STREAM_DOC, **_ERRORS},
        tags=["flows"],
    )
    return api
