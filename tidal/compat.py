"""Motion's helpers: ``StateMigrator``; on the default app
``get_instances``, ``inspect_state`` and ``clear_instance``, which take
Motion's instance names (``Component__id``), and ``get_components``;
``RedisParams``, ``copy_db`` and ``UpdateEventGroup``."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .app import App, default_app
from .component import Component, defined_components
from .engine.migrate import MigrationResult, migrate
from .exceptions import ConfigError, DefinitionError
from .instance import Instance
from .stores import Store, from_url


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


def get_components(app: App | None = None) -> list[str]:
    """Names of the components that run in ``app`` (the default app unless
    given): those bound to it and, for the default app, those defined without
    an app, which bind to it on first use."""
    target = app or default_app()
    names = set(target.components)
    for component in defined_components():
        if (component.bound and component.app is target) or (not component.bound and app is None):
            names.add(component.name)
    return sorted(names)


@dataclass(frozen=True)
class RedisParams:
    """Where a Redis server is, as Motion names it: ``host``, ``port``,
    ``db`` and ``password``, each defaulting to Motion's environment
    variables (``MOTION_REDIS_HOST``, ``_PORT``, ``_DB``, ``_PASSWORD``).
    :attr:`url` is the Tidal store URL for it::

        tidal.App("shop", store=RedisParams().url)
    """

    host: str = field(default_factory=lambda: os.environ.get("MOTION_REDIS_HOST", "localhost"))
    port: int = field(default_factory=lambda: _env_int("MOTION_REDIS_PORT", 6379))
    db: int = field(default_factory=lambda: _env_int("MOTION_REDIS_DB", 0))
    password: str | None = field(default_factory=lambda: os.environ.get("MOTION_REDIS_PASSWORD") or None)

    @property
    def url(self) -> str:
        """``redis://[:password@]host:port/db``."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"

    def dict(self) -> dict[str, Any]:
        """The fields as a dict (what Motion passes to ``redis.Redis(**...)``)."""
        return {"host": self.host, "port": self.port, "db": self.db, "password": self.password}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


StoreLike = str | Store | RedisParams | App


def _open(where: StoreLike) -> tuple[Store, bool]:
    """The store ``where`` names, and whether it was opened here (to close)."""
    if isinstance(where, App):
        return where.store, False
    if isinstance(where, Store):
        return where, False
    return from_url(where.url if isinstance(where, RedisParams) else where), True


def copy_state(src: StoreLike, dest: StoreLike, components: Iterable[str] | None = None) -> int:
    """Copy the state of every instance of ``components`` (default: every
    component defined in this process) from ``src`` to ``dest``, replacing
    what ``dest`` holds for them; returns how many instances were copied.
    Values stay signed, so both sides must use the same secret key. Queued
    and failed ops, history and cached results are not copied."""
    names = list(components) if components is not None else sorted({c.name for c in defined_components()})
    source, close_source = _open(src)
    target, close_target = _open(dest)
    if source is target or source.url == target.url:
        raise ValueError(f"source and destination are the same store ({source.url})")
    copied = 0
    try:
        for name in names:
            for instance in source.list_instances(name):
                read = source.read_state(name, instance)
                if read is None:  # deleted meanwhile
                    continue
                created, _ = target.create_instance(name, instance, read.changed)
                if not created:
                    current = target.read_state(name, instance)
                    stale = [k for k in (current.changed if current else {}) if k not in read.changed]
                    target.commit(name, instance, dict(read.changed), deleted=stale)
                copied += 1
    finally:
        if close_source:
            source.close()
        if close_target:
            target.close()
    return copied


async def copy_db(src: StoreLike, dest: StoreLike, components: Iterable[str] | None = None) -> int:
    """Motion's ``await copy_db(src, dest)``: :func:`copy_state` run in a
    worker thread, so the event loop goes on meanwhile."""
    return await asyncio.to_thread(copy_state, src, dest, components)


class UpdateEventGroup:
    """The pending update ops of one flow of an instance, to wait for
    (Motion's handle on them)::

        events = UpdateEventGroup(inst, "add")
        events.wait()  # the same as inst.flush_update("add")
    """

    def __init__(self, instance: Instance, key: str | None = None) -> None:
        self.instance = instance
        self.key = key

    def wait(self, timeout: float | None = None) -> None:
        """Return once the flow's queued update ops are applied; raises
        UpdateFailedError (a RuntimeError) if any failed."""
        self.instance.flush_update(self.key, timeout=timeout)

    def __repr__(self) -> str:
        return f"UpdateEventGroup(instance={self.instance.instance_id!r}, key={self.key!r})"
