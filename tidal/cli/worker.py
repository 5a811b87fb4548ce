"""``tidal worker``: run the update ops of the components TARGET defines."""

from __future__ import annotations

import logging
import signal
from typing import Any

import click

from ..constants import LEASE_SECONDS
from ..engine.executor import Executor
from .target import app_options, load_app, require_components


@click.command()
@click.argument("target")
@app_options
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
    """Run update ops of the components defined in TARGET (a module or .py
    file, optionally TARGET:app naming its tidal.App)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = load_app(target, app_name, store, lease_seconds=lease_seconds)
    require_components(app, target)
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


COMMANDS = [worker]
