"""The ``tidal`` command line."""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .app import App
from .commands import register
from .commands._common import TidalGroup, app_with_target
from .config import Settings
from .constants import LEASE_SECONDS


def _open_app(app_name: str, store: str | None) -> App:
    return App(app_name, store=store)


@click.group(cls=TidalGroup)
@click.version_option(__version__, prog_name="tidal")
def main() -> None:
    """Tidal: AI application state that keeps itself fresh.

    Exit status: 0 success, 1 the operation failed, 2 usage error,
    3 not found (unknown component, instance, key, version or op).
    Read commands print one JSON document with --json."""


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
    from .engine.executor import Executor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = None if lease_seconds is None else Settings(lease_seconds=lease_seconds)
    app = app_with_target(target, app_name, store, settings=settings)
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


register(main)


__import__("tidal.server.command", fromlist=["register"]).register(main)

if __name__ == "__main__":  # pragma: no cover
    main()
