"""What the app has: its components with their flows, and their instances
with their state versions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..exceptions import NotFoundError
from .common import AsDict, check_component, check_instance

if TYPE_CHECKING:
    from ..app import App


@dataclass(frozen=True)
class FlowInfo(AsDict):
    """One flow of a component: what runs when it is called or fired."""

    name: str
    serve: str | None
    """The serve op's function name, None if the flow has no serve op."""
    serve_kind: str | None
    """``sync``, ``async``, ``gen`` or ``agen``."""
    updates: list[str]
    """Update ops' function names, in the order they run."""
    triggers: list[str]
    """Relations (and events) that fire the flow, as ``relation:event,event``."""
    schedules: list[str]
    """``every <seconds>s`` or ``cron <expr>``."""


@dataclass(frozen=True)
class ComponentInfo(AsDict):
    """A component of the app and its flows."""

    name: str
    flows: list[FlowInfo]
    instances: int


@dataclass(frozen=True)
class InstanceInfo(AsDict):
    """An instance and its current state version."""

    component: str
    instance: str
    version: int


def components(app: App) -> list[ComponentInfo]:
    """Every component registered with ``app``, by name."""
    return [component(app, name) for name in sorted(app.components)]


def component(app: App, name: str) -> ComponentInfo:
    """One registered component with its flows."""
    comp = app.components.get(name)
    if comp is None:
        raise NotFoundError("component", name, sorted(app.components), where=f"app {app.name!r}")
    flows = []
    keys = (
        set(comp.serve_routes)
        | set(comp.update_routes)
        | {t.flow for t in comp.triggers}
        | {s.flow for s in comp.schedules}
    )
    for key in sorted(keys):
        serve = comp.serve_routes.get(key)
        flows.append(
            FlowInfo(
                name=key,
                serve=None if serve is None else getattr(serve.fn, "__name__", repr(serve.fn)),
                serve_kind=None if serve is None else serve.kind,
                updates=[getattr(route.fn, "__name__", route.name) for route in comp.update_routes.get(key, [])],
                triggers=[
                    f"{t.relation.__name__}:{','.join(t.events)}" + (" (serve)" if t.serve else "")
                    for t in comp.triggers
                    if t.flow == key
                ],
                schedules=[
                    f"every {s.every:g}s" if s.every is not None else f"cron {s.cron}"
                    for s in comp.schedules
                    if s.flow == key
                ],
            )
        )
    return ComponentInfo(name, flows, len(app.store.list_instances(name)))


def instance(app: App, comp: str, instance_id: str) -> InstanceInfo:
    """One instance with its current state version."""
    return InstanceInfo(comp, instance_id, check_instance(app, comp, instance_id))


def instances(app: App, comp: str) -> list[InstanceInfo]:
    """The instances of ``comp`` with their state versions, by id."""
    out = []
    for instance in check_component(app, comp):
        version = app.store.get_version(comp, instance)
        if version is not None:  # deleted meanwhile
            out.append(InstanceInfo(comp, instance, version))
    return out
