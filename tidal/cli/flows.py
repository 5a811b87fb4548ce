"""``tidal run`` and ``tidal migrate``: commands that need the app's code
(the TARGET module or file that defines its components)."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import admin
from ..compat import StateMigrator
from ..engine.runlog import jsonable
from ..exceptions import NotFoundError, UpdateFailedError
from .output import EXIT_FAILED, emit, json_option, parse_json_object
from .target import app_options, import_function, load_app, target_component


@click.command("run")
@click.argument("target")
@click.argument("component")
@click.argument("flow")
@click.option("--instance", "instance_id", required=True, help="The instance to run the flow on.")
@click.option("--props", default="{}", show_default=True, help="The flow's props, as a JSON object.")
@click.option(
    "--flush", is_flag=True, help="Wait until the flow's update ops are applied (exit status 1 if one fails)."
)
@app_options
@json_option
def run(
    target: str,
    component: str,
    flow: str,
    instance_id: str,
    props: str,
    flush: bool,
    app_name: str,
    store: str | None,
    as_json: bool,
) -> None:
    """Run FLOW of COMPONENT (defined in TARGET, a module or .py file, or
    TARGET:app naming its tidal.App) on an instance and print its result.
    Without --flush, its update ops stay queued for a worker (those this
    process gets to first are applied)."""
    parsed = parse_json_object(props, "--props")
    app = load_app(target, app_name, store)
    with app:
        comp = target_component(app, target, component)
        if flow not in comp.flow_keys():
            raise NotFoundError("flow", flow, comp.flow_keys(), where=f"component {component}")
        failed: UpdateFailedError | None = None
        with comp(instance_id) as inst:
            result = inst.run(flow, props=parsed)
            if flush:
                try:
                    inst.flush_update(flow)
                except UpdateFailedError as exc:
                    failed = exc
            version = inst.get_version()
            run_id = inst.last_run_id
    if as_json:
        out: dict[str, Any] = {"component": component, "instance": instance_id, "flow": flow,
                               "result": jsonable(result), "run_id": run_id, "version": version}  # fmt: skip
        if failed is not None:
            out["failed"] = [{"op_id": f.op_id, "flow": f.flow, "error": f.error} for f in failed.failures]
        emit(out)
    else:
        click.echo(repr(result) if not isinstance(result, str) else result)
        click.echo(f"{component}/{instance_id} at version {version} (run {run_id})", err=True)
    if failed is not None:
        click.echo(f"Error: {failed}", err=True)
        sys.exit(EXIT_FAILED)


@click.command("migrate")
@click.argument("target")
@click.argument("component")
@click.argument("function", metavar="FUNCTION")
@click.option("--instance", "instances", multiple=True, help="Migrate only this instance (repeatable; default: all).")
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Instances migrated at once.")
@app_options
@json_option
def migrate(
    target: str,
    component: str,
    function: str,
    instances: tuple[str, ...],
    workers: int,
    app_name: str,
    store: str | None,
    as_json: bool,
) -> None:
    """Rewrite the state of COMPONENT's instances with FUNCTION
    (module:function, taking the state dict and returning the new one),
    each instance in one atomic commit. Exit status 1 if any failed."""
    fn = import_function(function, param_hint="FUNCTION")
    app = load_app(target, app_name, store)
    with app:
        comp = target_component(app, target, component)
        for name in instances:
            admin.instance(app, component, name)  # not found: exit 3
        results = StateMigrator(comp, fn).migrate(list(instances) or None, num_workers=workers)
    failed = [r for r in results if r.exception is not None]
    if as_json:
        emit([{"instance": r.instance_id, "ok": r.exception is None,
               "error": None if r.exception is None else f"{type(r.exception).__name__}: {r.exception}"}
              for r in results])  # fmt: skip
    else:
        for r in results:
            status = "ok" if r.exception is None else f"failed: {type(r.exception).__name__}: {r.exception}"
            click.echo(f"{component}/{r.instance_id}: {status}")
        click.echo(f"migrated {len(results) - len(failed)} of {len(results)} instance(s)", err=True)
    if failed:
        sys.exit(EXIT_FAILED)


COMMANDS = [run, migrate]
