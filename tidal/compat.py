"""Motion's module-level helpers, on the default app: ``get_instances``,
``inspect_state`` and ``clear_instance`` take Motion's instance names
(``Component__id``)."""

from __future__ import annotations

from typing import Any

from .app import App, default_app


def _split(instance_name: str) -> tuple[str, str]:
    component, sep, instance = instance_name.partition("__")
    if not sep or not component or not instance:
        raise ValueError(f"instance name must look like 'Component__instanceid', got {instance_name!r}")
    return component, instance


def get_instances(component_name: str, app: App | None = None) -> list[str]:
    """Ids of every stored instance of a component."""
    return (app or default_app()).store.list_instances(component_name)


def inspect_state(instance_name: str, app: App | None = None) -> dict[str, Any]:
    """The latest state of ``Component__id`` as a plain dict (a copy).
    ValueError if no such instance is stored."""
    app = app or default_app()
    component_name, instance = _split(instance_name)
    read = app.store.read_state(component_name, instance)
    if read is None:
        raise ValueError(f"instance {instance_name} does not exist in {app.store.url}")
    component = app.components.get(component_name)
    if component is not None:
        layout = app.layout(component)
        snapshot = layout.snapshot(read.version, read.changed, app.decode, instance)
        return layout.update_state(snapshot.raw_items, app.decode, instance).copy()
    return {key: app.decode(raw, key) for key, raw in read.changed.items()}


def clear_instance(instance_name: str, app: App | None = None) -> bool:
    """Delete the state, queued ops and cached results of ``Component__id``;
    True if it existed."""
    app = app or default_app()
    component_name, instance = _split(instance_name)
    existed = app.store.get_version(component_name, instance) is not None
    app.store.delete_instance(component_name, instance)
    component = app.components.get(component_name)
    if component is not None:
        app.forget(component, instance)
    else:
        app.cache.drop_instance(component_name, instance)
    return existed
