"""``tidal queue`` and ``tidal freshness``: queue depth, update lag and
failed ops; retry or drop a failed op."""

from __future__ import annotations

import sys
from datetime import timedelta

import click
from rich.console import Console
from rich.table import Table

from .. import admin
from .output import EXIT_FAILED, emit, json_option, ms, when
from .target import app_options, open_app


class _QueueGroup(click.Group):
    """``tidal queue COMPONENT [INSTANCE]`` runs ``show``; the subcommands
    keep their names."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_QueueGroup, invoke_without_command=True)
@click.pass_context
def queue(ctx: click.Context) -> None:
    """Queues of update ops: depth, lag and failures (``queue COMPONENT
    [INSTANCE]``), and failed ops listed, retried or dropped."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(2)


@queue.command("show")
@click.argument("component")
@click.argument("instance", required=False)
@click.option("--window", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Seconds of update runs to measure lag over.")  # fmt: skip
@app_options
@json_option
def show(component: str, instance: str | None, window: float, app_name: str, store: str | None, as_json: bool) -> None:
    """Depth, lag and failures of COMPONENT; with INSTANCE, the pending and
    failed ops of that instance. Exit status 1 when there are failed ops.
    (``tidal freshness`` shows several components at once.)"""
    with open_app(app_name, store) as app:
        if instance is not None:
            waiting = admin.instance_queue(app, component, instance)
        else:
            rows = admin.queues(app, [component], timedelta(seconds=window))
    if instance is not None:
        if as_json:
            emit(waiting.as_dict())
        else:
            console = Console()
            console.print(f"{component}/{instance}: {waiting.pending} pending, {len(waiting.failed)} failed")
            for f in waiting.failed:
                console.print(f"[red]op {f.op_id}[/red] flow {f.flow!r} at {when(f.failed_at)}:\n{f.error}")
        if waiting.failed:
            sys.exit(EXIT_FAILED)
        return
    _print_freshness(rows, as_json)


def _print_freshness(rows: list[admin.Freshness], as_json: bool) -> None:
    """The rows as JSON or a table; exit status 1 when any has failed ops."""
    if as_json:
        emit([r.as_dict() for r in rows])
    else:
        table = Table("component", "pending", "waiting", "oldest wait", "failed", "updates", "lag p50", "lag p99")
        for r in rows:
            oldest = "-" if r.oldest_wait_s is None else f"{r.oldest_wait_s:.1f} s"
            table.add_row(r.component, str(r.pending), str(r.instances_waiting), oldest, str(r.failed),
                          str(r.updates), ms(r.lag_p50_ms), ms(r.lag_p99_ms))  # fmt: skip
        Console().print(table)
    if any(r.failed for r in rows):
        sys.exit(EXIT_FAILED)


@click.command()
@click.argument("components", nargs=-1, required=True)
@click.option("--window", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Seconds of update runs to measure lag over.")  # fmt: skip
@app_options
@json_option
def freshness(components: tuple[str, ...], window: float, app_name: str, store: str | None, as_json: bool) -> None:
    """Queue depth and update lag of COMPONENTS (exit status 1 if any has failed ops)."""
    with open_app(app_name, store) as app:
        rows = admin.queues(app, list(components), timedelta(seconds=window))
    _print_freshness(rows, as_json)


@queue.command("failures")
@click.argument("component")
@click.option("--instance", default=None, help="Only this instance's failed ops.")
@click.option("--flow", default=None, help="Only this flow's failed ops.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--traceback", "tracebacks", is_flag=True, help="Print each op's whole traceback.")
@app_options
@json_option
def failures(
    component: str,
    instance: str | None,
    flow: str | None,
    limit: int,
    tracebacks: bool,
    app_name: str,
    store: str | None,
    as_json: bool,
) -> None:
    """List failed update ops of COMPONENT, newest first."""
    with open_app(app_name, store) as app:
        found = admin.failures(app, component, instance=instance, flow=flow, limit=limit)
    if as_json:
        emit([f.as_dict() for f in found])
        return
    if tracebacks:
        console = Console()
        for f in found:
            console.print(f"[red]op {f.op_id}[/red] {f.instance} flow {f.flow!r} at {when(f.failed_at)}:\n{f.error}")
        return
    table = Table("op", "instance", "flow", "failed at", "error", title=f"failed ops of {component}")
    for f in found:
        table.add_row(str(f.op_id), f.instance, f.flow, when(f.failed_at), f.summary)
    Console().print(table)


@queue.command("retry")
@click.argument("component")
@click.argument("op_id", metavar="OP", type=int)
@click.option("--instance", default=None, help="The op's instance (found by its id if not given).")
@app_options
@json_option
def retry(component: str, op_id: int, instance: str | None, app_name: str, store: str | None, as_json: bool) -> None:
    """Queue failed op OP of COMPONENT again, at the tail of its instance's queue."""
    with open_app(app_name, store) as app:
        done = admin.retry_failed(app, component, op_id, instance=instance)
    if as_json:
        emit(done.as_dict())
    else:
        click.echo(f"op {op_id} of {component}/{done.instance} queued again as op {done.new_op_id}")


@queue.command("drop")
@click.argument("component")
@click.argument("op_id", metavar="OP", type=int)
@click.option("--instance", default=None, help="The op's instance (found by its id if not given).")
@app_options
@json_option
def drop(component: str, op_id: int, instance: str | None, app_name: str, store: str | None, as_json: bool) -> None:
    """Forget failed op OP of COMPONENT."""
    with open_app(app_name, store) as app:
        gone = admin.drop_failed(app, component, op_id, instance=instance)
    if as_json:
        emit(gone.as_dict())
    else:
        click.echo(f"dropped failed op {op_id} of {component}/{gone.instance} (flow {gone.flow!r})")


COMMANDS = [queue, freshness]
