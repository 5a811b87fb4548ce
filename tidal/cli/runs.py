"""``tidal runs tail | stats``: the latest rows of the runs log, and
latency, errors and feedback per component and flow."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import click
from rich.console import Console
from rich.table import Table

from .. import admin
from .output import emit, json_option, ms
from .target import app_options, open_app


@click.group()
def runs() -> None:
    """The runs log: every serve and update run."""


def _table(rows: list[admin.RunInfo]) -> Table:
    table = Table("started", "component", "instance", "flow", "kind", "status", "latency", "error")
    for r in rows:
        error = (r.error or "").strip().splitlines()
        table.add_row(
            (r.started_at or "")[:23], r.component, r.instance, r.flow, r.kind, r.status, ms(r.latency_ms),
            error[-1] if error else "",
        )  # fmt: skip
    return table


@runs.command("tail")
@click.option("--component", default=None, help="Only runs of this component.")
@click.option("--instance", default=None, help="Only runs of this instance.")
@click.option("--flow", default=None, help="Only runs of this flow.")
@click.option("--status", type=click.Choice(admin.RUN_STATUSES), default=None, help="Only runs with this status.")
@click.option("--kind", type=click.Choice(["serve", "update"]), default=None, help="Only serve or update runs.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--follow", is_flag=True, help="Keep printing new runs (JSON: one document per line) until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between polls with --follow.")  # fmt: skip
@app_options
@json_option
def tail(
    component: str | None,
    instance: str | None,
    flow: str | None,
    status: str | None,
    kind: str | None,
    limit: int,
    follow: bool,
    interval: float,
    app_name: str,
    store: str | None,
    as_json: bool,
) -> None:
    """Show the latest runs, oldest of them first."""
    filters = {"component": component, "instance": instance, "flow": flow, "status": status, "kind": kind}
    with open_app(app_name, store) as app:
        rows = list(reversed(admin.runs(app, limit=limit, **filters)))
        if as_json and not follow:
            emit([r.as_dict() for r in rows])
            return
        console = Console()
        if as_json:
            for r in rows:
                click.echo(json.dumps(r.as_dict(), default=str))
        else:
            console.print(_table(rows))
        if not follow:
            return
        last = rows[-1].created_at if rows else None
        seen = {r.id for r in rows}
        try:
            while True:
                time.sleep(interval)
                fresh = [r for r in reversed(admin.runs(app, limit=1000, after=last, **filters)) if r.id not in seen]
                for r in fresh:
                    seen.add(r.id)
                    if as_json:
                        click.echo(json.dumps(r.as_dict(), default=str))
                if fresh:
                    last = fresh[-1].created_at
                    if not as_json:
                        console.print(_table(fresh))
        except KeyboardInterrupt:
            return


@runs.command("stats")
@click.option("--component", default=None, help="Only this component.")
@click.option("--window", type=click.FloatRange(min=0, min_open=True), default=3600.0, show_default=True,
              help="Seconds of runs to look at.")  # fmt: skip
@app_options
@json_option
def stats(component: str | None, window: float, app_name: str, store: str | None, as_json: bool) -> None:
    """Runs, errors, latency percentiles and feedback per component and flow."""
    with open_app(app_name, store) as app:
        rows = admin.run_stats(app, component=component, window=timedelta(seconds=window))
    if as_json:
        emit([r.as_dict() for r in rows])
        return
    table = Table("component", "flow", "kind", "runs", "errors", "p50", "p95", "p99", "feedback", "mean score")
    for r in rows:
        score = "-" if r.feedback_mean_score is None else f"{r.feedback_mean_score:.2f}"
        table.add_row(r.component, r.flow, r.kind, str(r.count), str(r.errors), ms(r.latency_p50_ms),
                      ms(r.latency_p95_ms), ms(r.latency_p99_ms), str(r.feedback_count), score)  # fmt: skip
    Console().print(table)


COMMANDS = [runs]
