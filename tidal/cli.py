"""The ``tidal`` command line."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .app import App, set_default_app
from .config import Settings
from .constants import LEASE_SECONDS
from .core.component import defined_components


def _open_app(app_name: str, store: str | None) -> App:
    return App(app_name, store=store)


def _load_target(target: str) -> None:
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


@click.group()
@click.version_option(__version__, prog_name="tidal")
def main() -> None:
    """Tidal: AI application state that keeps itself fresh."""


@main.command()
@click.option(
    "--example", type=click.Choice(["preferences", "zscore", "docs"]), default="preferences", show_default=True
)
@click.option("--keep", is_flag=True, help="Continue from the state left by the last demo run.")
def demo(example: str, keep: bool) -> None:
    """Run an example app on the embedded store (./.tidal/demo.db)."""
    from .demo import run_docs, run_preferences, run_zscore

    console = Console()
    if example == "preferences":
        run_preferences(console, keep=keep)
    elif example == "docs":
        run_docs(console)
    else:
        run_zscore(console)


@main.command()
@click.argument("target")
@click.option("--app", "app_name", default="default", show_default=True, help="App name (names the store file).")
@click.option("--store", default=None, help="Store URL (default: TIDAL_STORE or sqlite in TIDAL_HOME).")
@click.option("--threads", default=2, show_default=True, help="Update threads.")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option(
    "--lease",
    "lease_seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"Seconds a claimed batch stays locked without a heartbeat [default: {LEASE_SECONDS:g}].",
)
def worker(
    target: str, app_name: str, store: str | None, threads: int, burst: bool, lease_seconds: float | None
) -> None:
    """Run update ops of the components defined in TARGET (a module or .py file)."""
    from .executor import Executor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = None if lease_seconds is None else Settings(lease_seconds=lease_seconds)
    app = App(app_name, store=store, settings=settings)
    set_default_app(app)
    _load_target(target)
    for component in defined_components():
        if not component.bound:
            component.bind(app)
        elif component.app.store.url == app.store.url:
            app.register(component)
    if not app.components:
        raise click.ClickException(f"{target} defines no components used by app {app_name!r}")
    click.echo(f"worker on {app.store.url}: {', '.join(sorted(app.components))}", err=True)
    if burst:
        ran = Executor(app, threads=1).drain()
        click.echo(f"processed {ran} batch(es)", err=True)
        app.close()
        return
    executor = Executor(app, threads=threads)
    stopping = {"now": False}

    def stop(*_: Any) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    executor.start()
    while not stopping["now"]:
        signal.pause()
    executor.stop()
    app.close()


@main.command()
@click.argument("component")
@click.option("--app", "app_name", default="default", show_default=True)
@click.option("--store", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def instances(component: str, app_name: str, store: str | None, as_json: bool) -> None:
    """List the instances of COMPONENT with their state versions."""
    app = _open_app(app_name, store)
    rows = [(i, app.store.get_version(component, i)) for i in app.store.list_instances(component)]
    app.close()
    if as_json:
        click.echo(json.dumps([{"instance": i, "version": v} for i, v in rows]))
        return
    table = Table("instance", "version", title=f"{component} instances")
    for i, v in rows:
        table.add_row(i, str(v))
    Console().print(table)


@main.command()
@click.argument("components", nargs=-1, required=True)
@click.option("--app", "app_name", default="default", show_default=True)
@click.option("--store", default=None)
@click.option("--window", default=300.0, show_default=True, help="Seconds of update runs to measure lag over.")
@click.option("--json", "as_json", is_flag=True)
def freshness(components: tuple[str, ...], app_name: str, store: str | None, window: float, as_json: bool) -> None:
    """Queue depth and update lag of COMPONENTS (exit status 1 if any has failed ops)."""
    from datetime import timedelta

    app = _open_app(app_name, store)
    rows = app.freshness(list(components), timedelta(seconds=window))
    app.close()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows]))
    else:
        table = Table("component", "pending", "waiting", "oldest wait", "failed", "updates", "lag p50", "lag p99")

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        for r in rows:
            oldest = "-" if r.oldest_wait_s is None else f"{r.oldest_wait_s:.1f} s"
            table.add_row(
                r.component,
                str(r.pending),
                str(r.instances_waiting),
                oldest,
                str(r.failed),
                str(r.updates),
                ms(r.lag_p50_ms),
                ms(r.lag_p99_ms),
            )
        Console().print(table)
    if any(r.failed for r in rows):
        sys.exit(1)


@main.group()
def state() -> None:
    """Inspect instance state."""


@state.command("show")
@click.argument("component")
@click.argument("instance")
@click.option("--app", "app_name", default="default", show_default=True)
@click.option("--store", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (values as repr strings).")
def state_show(component: str, instance: str, app_name: str, store: str | None, as_json: bool) -> None:
    """Show the keys, sizes and values of one instance's state."""
    app = _open_app(app_name, store)
    read = app.store.read_state(component, instance)
    if read is None:
        app.close()
        raise click.ClickException(f"no instance {component}/{instance} in {app.store.url}")
    rows: list[dict[str, Any]] = []
    for key, raw in sorted(read.changed.items()):
        try:
            value = repr(app.decode(raw, key))
        except Exception as exc:  # show what is wrong instead of failing the whole listing
            value = f"<unreadable: {exc}>"
        rows.append({"key": key, "bytes": len(raw), "value": value})
    app.close()
    if as_json:
        click.echo(json.dumps({"component": component, "instance": instance, "version": read.version, "keys": rows}))
        return
    table = Table("key", "bytes", "value", title=f"{component}/{instance} at version {read.version}")
    for row in rows:
        table.add_row(row["key"], str(row["bytes"]), row["value"][:200])
    Console().print(table)


@main.command()
@click.argument("component")
@click.argument("instance")
@click.option("--app", "app_name", default="default", show_default=True)
@click.option("--store", default=None)
@click.option("--json", "as_json", is_flag=True)
def queue(component: str, instance: str, app_name: str, store: str | None, as_json: bool) -> None:
    """Show queued and failed update ops of one instance."""
    app = _open_app(app_name, store)
    pending = app.store.pending(component, instance)
    failures = app.store.failures(component, instance)
    app.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "pending": pending,
                    "failed": [{"op_id": f.op_id, "flow": f.flow, "error": f.error} for f in failures],
                }
            )
        )
        return
    console = Console()
    console.print(f"{component}/{instance}: {pending} pending, {len(failures)} failed")
    for f in failures:
        console.print(f"[red]op {f.op_id}[/red] flow {f.flow!r}:\n{f.error}")
    if failures:
        sys.exit(1)


__import__("tidal.server.command", fromlist=["register"]).register(main)

if __name__ == "__main__":  # pragma: no cover
    main()
