"""Opening the user's app: the one way every command gets its :class:`App`.

Commands that only read the store (``state``, ``queue``, ``sql``, ``keys``,
...) open it by name with :func:`open_app`. Commands that run the user's
code (``worker``, ``serve``, ``run``, ``migrate``) take a TARGET, a module
(``shop``), a file (``shop.py``), optionally followed by ``:attr`` naming
the :class:`App` (``shop.py:app``), and get the app with :func:`load_app`.

There is exactly one app per target: when the file defines its own
``tidal.App`` and binds its components to it, that object is the app the
command uses (its runs log, caches and executor are the ones the flows
use). A second App on the same store would leave runs and feedback in two
places.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import click

from ..app import App, set_default_app
from ..component import Component, defined_components
from ..config import Settings
from ..exceptions import NotFoundError
from .output import UsageExit

F = TypeVar("F", bound=Callable[..., Any])


def app_options(fn: F) -> F:
    """``--app`` and ``--store``, the options that pick the app's store."""
    fn = click.option("--store", default=None, help="Store URL (default: TIDAL_STORE or a SQLite file in TIDAL_HOME).")(
        fn
    )
    return click.option(
        "--app", "app_name", default="default", show_default=True, help="App name (names the store file)."
    )(fn)


def db_option(fn: F) -> F:
    """``--db``, where the relations live when not in the store's file."""
    return click.option(
        "--db", default=None, help="Relations database URL (default: TIDAL_DB or the store's SQLite file)."
    )(fn)


def new_app(app_name: str, store: str | None, **kwargs: Any) -> App:
    """``App(app_name, store, **kwargs)``; a malformed setting (a ``TIDAL_*``
    variable) is a usage error, exit status 2, like a malformed store URL."""
    try:
        return App(app_name, store=store, **kwargs)
    except ValueError as exc:
        raise UsageExit(str(exc)) from exc


def open_app(app_name: str, store: str | None, db: str | None = None) -> App:
    """The app named ``app_name`` on its store, without the user's code:
    enough to read and act on state, queues, runs and keys."""
    return new_app(app_name, store, db=db)


def split_target(target: str) -> tuple[str, str | None]:
    """``(module or file, attr)`` of ``shop.py:app``; attr is None without one."""
    head, sep, attr = target.rpartition(":")
    if sep and head and attr.isidentifier() and not (len(head) == 1 and head.isalpha()):  # not a drive letter
        return head, attr
    return target, None


def import_target(spec: str, param_hint: str = "TARGET") -> ModuleType:
    """Import a module by name, or a ``.py`` file by path (its folder then
    comes first on ``sys.path``, so that its sibling modules import)."""
    path = Path(spec)
    if path.suffix == ".py" or path.is_file():
        if not path.is_file():
            raise click.BadParameter(f"file {spec} does not exist", param_hint=param_hint)
        sys.path.insert(0, str(path.resolve().parent))
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
        return module
    sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {spec!r}: {exc}", param_hint=param_hint) from exc


def import_function(spec: str, param_hint: str) -> Callable[..., Any]:
    """The function ``module:function`` (or ``file.py:function``) names."""
    where, attr = split_target(spec)
    if attr is None:
        raise click.BadParameter(f"expected module:function, got {spec!r}", param_hint=param_hint)
    fn = getattr(import_target(where, param_hint), attr, None)
    if not callable(fn):
        raise click.BadParameter(f"{where} has no function {attr!r}", param_hint=param_hint)
    return fn  # type: ignore[no-any-return]


def _describe(app: App) -> str:
    return f"app {app.name!r} at {app.store.url}"


def _pick(module: ModuleType, target: str, attr: str | None, fallback: App, defined: list[Component]) -> App:
    """The one app of the target (see the module docstring)."""
    if attr is not None:
        named = getattr(module, attr, None)
        if not isinstance(named, App):
            raise click.BadParameter(f"{attr!r} in {target} is not a tidal.App", param_hint="TARGET")
        return named
    own: list[App] = []
    on_fallback = False
    for comp in defined:
        if not comp.bound:
            continue
        if comp.app is fallback:
            on_fallback = True
        elif comp.app.store.url == fallback.store.url and comp.app not in own:
            own.append(comp.app)
    if len(own) + on_fallback > 1:
        apps = [_describe(a) for a in own] + (["the default app"] if on_fallback else [])
        raise click.UsageError(
            f"{target} binds components to {len(apps)} apps on one store ({'; '.join(apps)}): "
            "name the one to use as TARGET:attr"
        )
    return own[0] if own else fallback


def load_app(
    target: str,
    app_name: str,
    store: str | None,
    *,
    db: str | None = None,
    lease_seconds: float | None = None,
) -> App:
    """Import TARGET and return the app its components run in.

    While TARGET is imported, the default app is ``App(app_name, store)``:
    components not bound to an app (Motion style) and code calling
    :func:`tidal.default_app` get it. If instead the file binds its
    components to its own ``App`` on that store (or names one as
    ``TARGET:attr``), that App is the one returned and the default one is
    closed: one app per target. ``lease_seconds`` then applies to it;
    ``db`` must be given to its constructor instead."""
    where, attr = split_target(target)
    settings = None if lease_seconds is None else Settings(lease_seconds=lease_seconds)
    fallback = new_app(app_name, store, db=db, settings=settings)
    set_default_app(fallback)
    # Only the components TARGET defines are its own: others this process
    # holds (a caller that runs the CLI in process) keep their app.
    before = set(defined_components())
    try:
        module = import_target(where)
        defined = [c for c in defined_components() if c not in before]
        app = _pick(module, target, attr, fallback, defined)
        if app is not fallback:
            if db is not None:
                raise click.UsageError(f"{target} defines its own App ({_describe(app)}): give it db= instead of --db")
            if lease_seconds is not None:
                app.settings.lease_seconds = lease_seconds
    except BaseException:
        set_default_app(None)
        fallback.close()
        raise
    if app is not fallback:
        fallback.close()
        set_default_app(app)
    for comp in defined:
        if not comp.bound:
            comp.bind(app)
    return app


def require_components(app: App, target: str) -> None:
    """A usage error unless ``app`` has components to run, naming the apps
    the target's components are bound to instead."""
    if app.components:
        return
    others = sorted({_describe(c.app) for c in defined_components() if c.bound and c.app is not app})
    hint = f" (it defines components of {', '.join(others)}: pass --app or --store)" if others else ""
    raise click.ClickException(f"{target} defines no components used by app {app.name!r}{hint}")


def target_component(app: App, target: str, name: str) -> Component:
    """The component ``name`` of the loaded app; not found lists the known ones."""
    comp = app.components.get(name)
    if comp is None:
        raise NotFoundError("component", name, sorted(app.components), where=target)
    return comp
