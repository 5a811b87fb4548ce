"""``tidal instances`` and ``tidal state show | history | rollback``: the
instances of a component, an instance's state keys, the earlier versions of
one key, and setting a key back to one of them."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from .. import admin
from .output import emit, json_option, when
from .target import app_options, open_app


@click.command()
@click.argument("component")
@app_options
@json_option
def instances(component: str, app_name: str, store: str | None, as_json: bool) -> None:
    """List the instances of COMPONENT with their state versions."""
    with open_app(app_name, store) as app:
        rows = admin.instances(app, component)
    if as_json:
        emit([{"instance": r.instance, "version": r.version} for r in rows])
        return
    table = Table("instance", "version", title=f"{component} instances")
    for r in rows:
        table.add_row(r.instance, str(r.version))
    Console().print(table)


@click.group()
def state() -> None:
    """Inspect instance state and roll keys back."""


@state.command("show")
@click.argument("component")
@click.argument("instance")
@app_options
@json_option
def show(component: str, instance: str, app_name: str, store: str | None, as_json: bool) -> None:
    """Show the keys of one instance's state: version, size, when written, value."""
    with open_app(app_name, store) as app:
        info = admin.state(app, component, instance, values=True)
    if as_json:
        emit(info.as_dict())
        return
    table = Table(
        "key", "version", "bytes", "written", "value", title=f"{component}/{instance} at version {info.version}"
    )
    for key in info.keys:
        table.add_row(key.key, str(key.version), str(key.size), when(key.written_at), key.value or "")
    Console().print(table)


@state.command("history")
@click.argument("component")
@click.argument("instance")
@click.argument("key")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many versions.")
@app_options
@json_option
def history(
    component: str, instance: str, key: str, limit: int | None, app_name: str, store: str | None, as_json: bool
) -> None:
    """Show the versions of KEY kept in the store, newest (current) first."""
    with open_app(app_name, store) as app:
        versions = admin.key_history(app, component, instance, key, limit=limit)
    if as_json:
        emit({"component": component, "instance": instance, "key": key, "versions": [v.as_dict() for v in versions]})
        return
    table = Table("version", "bytes", "written", "value", title=f"{component}/{instance} {key}")
    for v in versions:
        label = f"{v.version} (current)" if v.current else str(v.version)
        table.add_row(label, str(v.size), when(v.written_at), "<deleted>" if v.deleted else v.value or "")
    Console().print(table)


@state.command("rollback")
@click.argument("component")
@click.argument("instance")
@click.argument("key")
@click.option("--version", "version", type=int, required=True, help="The version of KEY to restore.")
@app_options
@json_option
def rollback(
    component: str, instance: str, key: str, version: int, app_name: str, store: str | None, as_json: bool
) -> None:
    """Set KEY back to its value at --version, committed as a new version
    (refused, exit status 1, if the state changes meanwhile)."""
    with open_app(app_name, store) as app:
        done = admin.rollback(app, component, instance, key, version)
    if as_json:
        emit(done.as_dict())
        return
    what = "deleted" if done.deleted else f"restored to its value at version {done.restored_version}"
    click.echo(f"{component}/{instance} {key} {what}; the instance is now at version {done.new_version}")


COMMANDS = [instances, state]
