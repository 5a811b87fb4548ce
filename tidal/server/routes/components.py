"""Components, their instances and state: ``GET /components``,
``/components/{c}``, ``/components/{c}/instances``,
``/components/{c}/instances/{i}/state``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ..context import INSTANCE_PATTERN, ServerContext, runnable_flows
from ..scopes import Principal

if TYPE_CHECKING:
    from ...component import Component


class FlowInfo(BaseModel):
    name: str
    serve: str | None = Field(description="Kind of the serve op: sync, async, gen, agen; null without one.")
    updates: list[str] = Field(description="Names of the update ops, in the order they run.")
    props_schema: dict[str, Any] | None = Field(description="JSON schema of the declared props; null: any object.")
    runnable: bool = Field(description="False for flows fired only by relation changes or schedules.")


class ComponentInfo(BaseModel):
    name: str
    flows: list[FlowInfo]
    triggers: list[str] = Field(description="Relations whose changes run a flow of this component.")


class InstanceInfo(BaseModel):
    id: str
    version: int | None


class InstanceList(BaseModel):
    component: str
    instances: list[InstanceInfo]
    truncated: bool


class StateKey(BaseModel):
    type: str = Field(description="The Python type of the value.")
    bytes: int | None = Field(description="Stored size; null for a component that stores its state whole.")
    json_value: bool = Field(description="False when the value has no JSON form; `value` is then null.")
    value: Any = None


class StateView(BaseModel):
    component: str
    instance: str
    version: int
    keys: dict[str, StateKey]


def _schema(schema: Any) -> dict[str, Any] | None:
    if schema is None:
        return None
    from pydantic import TypeAdapter

    result: dict[str, Any] = TypeAdapter(schema).json_schema()
    return result


def describe(comp: Component) -> ComponentInfo:
    """What a component offers, as the API lists it."""
    runnable = set(runnable_flows(comp))
    flows = [
        FlowInfo(
            name=flow,
            serve=comp.serve_routes[flow].kind if flow in comp.serve_routes else None,
            updates=[r.name for r in comp.update_routes.get(flow, [])],
            props_schema=_schema(comp.props_schemas.get(flow)),
            runnable=flow in runnable,
        )
        for flow in comp.flow_keys()
    ]
    triggers = sorted({t.relation.relation() for t in comp.triggers})
    return ComponentInfo(name=comp.name, flows=flows, triggers=triggers)


def state_key(value: Any, size: int | None) -> StateKey:
    """One state value for JSON: itself where it has a JSON form, else a
    placeholder naming its type and size."""
    kind = type(value).__qualname__
    try:
        data = orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):
        return StateKey(type=kind, bytes=size, json_value=False)
    return StateKey(type=kind, bytes=size, json_value=True, value=data)


def read_state(
    ctx: ServerContext, comp: Component, instance: str, keys: list[str] | None, principal: Principal | None = None
) -> StateView:
    ctx.instance_version(comp, instance, principal)
    app = ctx.app
    snap = app.snapshot(comp, instance)
    out: dict[str, StateKey] = {}
    if comp.whole_state:
        state = app.layout(comp).update_state(snap.raw_items, app.decoder(comp.name, instance), instance)
        for key in sorted(state):
            if keys is None or key in keys:
                out[key] = state_key(state[key], None)
    else:
        for key in sorted(snap.raw_items):
            if keys is None or key in keys:
                raw = snap.raw(key)
                out[key] = state_key(snap[key], len(raw) if raw is not None else None)
    return StateView(component=comp.name, instance=instance, version=snap.version, keys=out)


def router(ctx: ServerContext) -> APIRouter:
    api = APIRouter(tags=["components"])

    @api.get("/components", response_model=list[ComponentInfo])
    def list_components(principal: Principal = Depends(ctx.principal)) -> list[ComponentInfo]:
        """The app's components and their flows (those the caller may read)."""
        return [describe(c) for n, c in sorted(ctx.app.components.items()) if principal.can(n)]

    @api.get("/components/{component}", response_model=ComponentInfo)
    def get_component(component: str, principal: Principal = Depends(ctx.principal)) -> ComponentInfo:
        """One component and its flows."""
        comp = ctx.component(component, principal)
        principal.require(comp.name)
        return describe(comp)

    @api.get("/components/{component}/instances", response_model=InstanceList)
    def list_instances(
        component: str,
        limit: int = Query(100, ge=1, le=10_000),
        principal: Principal = Depends(ctx.principal),
    ) -> InstanceList:
        """Instances of a component with their state versions (those the caller may read)."""
        comp = ctx.component(component, principal)
        principal.require(comp.name)
        ids = [i for i in sorted(ctx.app.store.list_instances(comp.name)) if principal.can(comp.name, i)]
        store = ctx.app.store
        shown = [InstanceInfo(id=i, version=store.get_version(comp.name, i)) for i in ids[:limit]]
        return InstanceList(component=comp.name, instances=shown, truncated=len(ids) > limit)

    @api.get(
        "/components/{component}/instances/{instance}/state",
        response_model=StateView,
        responses={404: {"description": "Unknown component or instance; the body lists the known names."}},
    )
    async def get_state(
        component: str,
        instance: str = Path(pattern=INSTANCE_PATTERN),
        keys: list[str] | None = Query(None, description="Only these keys."),
        principal: Principal = Depends(ctx.principal),
    ) -> StateView:
        """The state of an instance: its version, and each key's type, size
        and value (JSON where it has a JSON form). Never creates the instance."""
        comp = ctx.component(component, principal)
        principal.require(comp.name, instance)
        return await run_in_threadpool(read_state, ctx, comp, instance, keys, principal)

    return api
