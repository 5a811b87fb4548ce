"""What the commands share: app options, loading a target module, JSON
output, and the exit codes scripts rely on.

==== ============================================================
0    success
1    the operation failed (a failed update, an SQL error, a conflict)
2    usage error: a missing or malformed argument or option
3    not found: an unknown component, instance, state key, version or op
==== ============================================================
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..app import App, set_default_app
from ..core.component import Component, defined_components
from ..exceptions import NotFoundError, TidalError, UnknownFlowError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3

F = TypeVar("F", bound=Callable[..., Any])


class NotFoundExit(click.ClickException):
    """A ClickException that exits with status 3."""

    exit_code = EXIT_NOT_FOUND


class TidalGroup(click.Group):
    """The ``tidal`` group: Tidal's errors become messages with the
    documented exit codes instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NotFoundError, UnknownFlowError) as exc:
            raise NotFoundExit(str(exc)) from exc
        except TidalError as exc:
            raise click.ClickException(str(exc)) from exc


def app_options(fn: F) -> F:
    """``--app`` and ``--store``, the options that pick the app's store."""
    fn = click.option("--store", default=None, help="Store URL (default: TIDAL_STORE or a SQLite file in TIDAL_HOME).")(
        fn
    )
    return click.option(
        "--app", "app_name", default="default", show_default=True, help="App name (names the store file)."
    )(fn)


def json_option(fn: F) -> F:
    """``--json``: print one JSON document on stdout instead of tables."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for scripts).")(fn)


def open_app(app_name: str, store: str | None) -> App:
    return App(app_name, store=store)


def emit(data: Any) -> None:
    """Write ``data`` as one JSON document on stdout."""
    click.echo(json.dumps(data, default=str))


def load_target(target: str) -> None:
    """Import the module or file that defines the components to run."""
    path = Path(target)
    if path.suffix == ".py" or path.exists():
        if not path.exists():
            raise click.BadParameter(f"file {target} does not exist", param_hint="TARGET")
        sys.path.insert(0, str(path.resolve().parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return
    sys.path.insert(0, str(Path.cwd()))
    try:
        importlib.import_module(target)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {target!r}: {exc}", param_hint="TARGET") from exc


def app_with_target(target: str, app_name: str, store: str | None, **kwargs: Any) -> App:
    """An app with the components TARGET defines registered on it."""
    app = App(app_name, store=store, **kwargs)
    set_default_app(app)
    load_target(target)
    for component in defined_components():
        if not component.bound:
            component.bind(app)
        elif component.app.store.url == app.store.url:
            app.register(component)
    return app


def target_component(app: App, target: str, name: str) -> Component:
    comp = app.components.get(name)
    if comp is None:
        raise NotFoundError("component", name, sorted(app.components), where=target)
    return comp


def parse_json_object(value: str, option: str) -> dict[str, Any]:
    """``value`` parsed as a JSON object, or a usage error naming ``option``."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"expected a JSON object, got {value!r} ({exc})", param_hint=option) from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter(
            f"expected a JSON object, got a JSON {type(parsed).__name__}: {value!r}", param_hint=option
        )
    return parsed


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
