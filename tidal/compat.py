"""Motion's helpers: ``StateMigrator``, and on the default app
``get_instances``, ``inspect_state`` and ``clear_instance``, which take
Motion's instance names (``Component__id``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from .app import App, default_app
from .component import Component
from .engine.migrate import MigrationResult, migrate
from .exceptions import DefinitionError


class StateMigrator:
    """Apply ``migrate_fn(state) -> new state`` to instances of a component.

    Each instance is migrated in one atomic commit that also removes keys the
    new state no longer has; an update committed meanwhile makes the
    migration of that instance start again from the newer state::

        results = StateMigrator(Prefs, lambda s: {**s, "tags": []}).migrate()
    """

    def __init__(self, component: Component, migrate_fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        if not isinstance(component, Component):
            raise TypeError(f"component must be a Component, got {type(component).__name__}")
        params = inspect.signature(migrate_fn).parameters
        if len(params) != 1:
            raise DefinitionError(f"migrate_fn must take exactly one argument (state), it takes {list(params)}")
        self.component = component
        self.migrate_fn = migrate_fn

    def migrate(self, instance_ids: Iterable[str] | None = None, num_workers: int = 4) -> list[MigrationResult]:
        """Migrate the given instances (all of the component's when empty);
        one result per instance, in order."""
        return migrate(self.component.app, self.component, self.migrate_fn, instance_ids, num_workers)


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
    decode = app.decoder(component_name, instance)
    component = app.components.get(component_name)
    if component is not None:
        layout = app.layout(component)
        snapshot = layout.snapshot(read.version, read.changed, decode, instance)
        return layout.update_state(snapshot.raw_items, decode, instance).copy()
    return {key: decode(raw, key) for key, raw in read.changed.items()}


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
