"""``tidal runs tail | stats``: the latest rows of the runs log, and
latency, errors and feedback per component and flow, with how a runs-log
writer is doing (this process's, or a server's with ``--url``)."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .. import admin
from ..app import App
from .output import EXIT_FAILED, emit, json_option, ms, usd
from .target import app_options, open_app


@click.group()
def runs() -> None:
    """The runs log: every serve and update run."""


def _table(rows: list[admin.RunInfo], totals: dict[str, admin.RunModelTotals]) -> Table:
    table = Table("started", "component", "instance", "flow", "kind", "status", "latency", "model cost", "tokens",
                  "error")  # fmt: skip
    for r in rows:
        error = (r.error or "").strip().splitlines()
        used = totals.get(r.id)
        table.add_row(
            (r.started_at or "")[:23], r.component, r.instance, r.flow, r.kind, r.status, ms(r.latency_ms),
            usd(used.cost) if used else "-", f"{used.tokens:,}" if used else "-", error[-1] if error else "",
        )  # fmt: skip
    return table


def _as_dicts(app: App, rows: list[admin.RunInfo]) -> list[dict[str, Any]]:
    """Runs as JSON, each with ``models``: its model calls' calls, tokens
    and cost, or None when it called no model."""
    totals = admin.run_model_totals(app, [r.id for r in rows])
    return [{**r.as_dict(), "models": totals[r.id].as_dict() if r.id in totals else None} for r in rows]


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
            emit(_as_dicts(app, rows))
            return
        console = Console()
        if as_json:
            for line in _as_dicts(app, rows):
                click.echo(json.dumps(line, default=str))
        else:
            console.print(_table(rows, admin.run_model_totals(app, [r.id for r in rows])))
        if not follow:
            return
        last = rows[-1].created_at if rows else None
        seen = {r.id for r in rows}
        try:
            while True:
                time.sleep(interval)
                fresh = [r for r in reversed(admin.runs(app, limit=1000, after=last, **filters)) if r.id not in seen]
                seen.update(r.id for r in fresh)
                if fresh and as_json:
                    for line in _as_dicts(app, fresh):
                        click.echo(json.dumps(line, default=str))
                if fresh:
                    last = fresh[-1].created_at
                    if not as_json:
                        console.print(_table(fresh, admin.run_model_totals(app, [r.id for r in fresh])))
        except KeyboardInterrupt:
            return


def _server_runs_log(url: str) -> dict[str, Any] | None:
    """The runs-log writer of the `tidal serve` at ``url``, from its
    ``/readyz`` (which needs no key), with ``warning`` added."""
    import httpx  # only --url needs it, and every tidal command imports this module

    try:
        response = httpx.get(url.rstrip("/") + "/readyz", timeout=10)
        checks = response.json()["checks"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(f"cannot read the runs log's state from {url}/readyz: {exc}") from exc
    health: dict[str, Any] | None = checks.get("runs_log")
    if health is not None:
        health = {k: v for k, v in health.items() if k not in ("ok", "required")}
        health["warning"] = admin.runs_log_warning(health)
    return health


def _health_line(health: dict[str, Any] | None, where: str) -> str:
    if health is None:
        return f"runs log ({where}): none (the app runs with runs_log=False)"
    if health["warning"] is not None:
        return f"WARNING: runs log ({where}) is unhealthy: {health['warning']}"
    return (
        f"runs log ({where}): healthy, {health['written']} written, "
        f"{health['pending']} pending, {health['failed']} failed"
    )


@runs.command("stats")
@click.option("--component", default=None, help="Only this component.")
@click.option("--window", type=click.FloatRange(min=0, min_open=True), default=3600.0, show_default=True,
              help="Seconds of runs to look at.")  # fmt: skip
@click.option("--url", default=None, metavar="URL",
              help="A running `tidal serve` (e.g. http://127.0.0.1:8000): show its runs-log writer "
                   "(from its /readyz) instead of this process's.")  # fmt: skip
@app_options
@json_option
def stats(component: str | None, window: float, url: str | None, app_name: str, store: str | None,
          as_json: bool) -> None:  # fmt: skip
    """Runs, errors, latency percentiles and feedback per component and
    flow, and how the runs log's writer is doing: written, pending, failed,
    the last error. Each process writes its own runs: without --url this is
    the writer of this command's process; with --url, the server's. Exits 1
    when the writer shown is dead, behind, retrying, or has failed to store
    runs (JSON: {"flows": [...], "runs_log": {...} or null})."""
    with open_app(app_name, store) as app:
        rows = admin.run_stats(app, component=component, window=timedelta(seconds=window))
        health = _server_runs_log(url) if url is not None else admin.runs_log_health(app)
    where = f"server {url}" if url is not None else f"this process, pid {health['pid'] if health else '-'}"
    if as_json:
        emit({"flows": [r.as_dict() for r in rows], "runs_log": health})
    else:
        table = Table("component", "flow", "kind", "runs", "errors", "p50", "p95", "p99", "feedback", "mean score")
        for r in rows:
            score = "-" if r.feedback_mean_score is None else f"{r.feedback_mean_score:.2f}"
            table.add_row(r.component, r.flow, r.kind, str(r.count), str(r.errors), ms(r.latency_p50_ms),
                          ms(r.latency_p95_ms), ms(r.latency_p99_ms), str(r.feedback_count), score)  # fmt: skip
        Console().print(table)
        line = _health_line(health, where)
        click.echo(line, err=line.startswith("WARNING"))
    if health is not None and health["warning"] is not None:
        sys.exit(EXIT_FAILED)


COMMANDS = [runs]
