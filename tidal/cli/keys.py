"""``tidal keys create | list | revoke | token``: the API keys and JWTs
that ``tidal serve --api-key-required`` accepts."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from .. import server
from ..exceptions import RecordNotFoundError
from .target import app_options, db_option, open_app


def _scope_options(fn: Any) -> Any:
    fn = click.option("--write", is_flag=True, help="Allow writes (run flows that update, insert, feedback).")(fn)
    fn = click.option(
        "--relation",
        "relations",
        multiple=True,
        help="Relation pattern (repeatable; default: all, or none when --component / --instance restrict the key).",
    )(fn)
    fn = click.option("--instance", "instances", multiple=True, help="Instance pattern, e.g. 'u-*' (repeatable).")(fn)
    return click.option("--component", "components", multiple=True, help="Component pattern (repeatable).")(fn)


def _scope(components: tuple[str, ...], instances: tuple[str, ...], relations: tuple[str, ...], write: bool) -> Any:
    restricted = bool(components or instances)
    return server.Scope(
        components=components or ("*",),
        instances=instances or ("*",),
        relations=relations or (() if restricted else ("*",)),
        write=write,
    )


@click.group()
def keys() -> None:
    """Manage API keys (stored hashed in the app's database)."""


@keys.command("create")
@app_options
@db_option
@click.option("--name", required=True, help="Who or what the key is for.")
@_scope_options
@click.option("--json", "as_json", is_flag=True)
def keys_create(
    app_name: str,
    store: str | None,
    db: str | None,
    name: str,
    components: tuple[str, ...],
    instances: tuple[str, ...],
    relations: tuple[str, ...],
    write: bool,
    as_json: bool,
) -> None:
    """Create a key (read-only unless --write) and print it once."""
    app = open_app(app_name, store, db)
    try:
        key, record = server.KeyStore(app.db).create(name, _scope(components, instances, relations, write))
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps({"key": key, **record.as_dict()}))
        return
    click.echo(key)
    click.echo(f"key {record.id} ({name}): {json.dumps(record.scope.as_dict())}; it is not shown again", err=True)


@keys.command("list")
@app_options
@db_option
@click.option("--json", "as_json", is_flag=True)
def keys_list(app_name: str, store: str | None, db: str | None, as_json: bool) -> None:
    """List keys (ids, names, scopes; never the keys themselves)."""
    from rich.console import Console
    from rich.table import Table

    app = open_app(app_name, store, db)
    try:
        records = server.KeyStore(app.db).list()
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records]))
        return
    table = Table("id", "name", "components", "instances", "relations", "write", "created", "revoked")
    for r in records:
        s = r.scope
        table.add_row(
            r.id,
            r.name,
            ",".join(s.components),
            ",".join(s.instances),
            ",".join(s.relations) or "-",
            "yes" if s.write else "no",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "",
        )
    Console().print(table)


@keys.command("revoke")
@click.argument("key_id")
@app_options
@db_option
def keys_revoke(key_id: str, app_name: str, store: str | None, db: str | None) -> None:
    """Revoke the key KEY_ID: it stops working at once."""
    app = open_app(app_name, store, db)
    try:
        record = server.KeyStore(app.db).revoke(key_id)
    except RecordNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        app.close()
    click.echo(f"revoked key {record.id} ({record.name})", err=True)


@keys.command("token")
@_scope_options
@click.option(
    "--ttl", default=3600.0, show_default=True, type=click.FloatRange(min=1), help="Seconds until it expires."
)
@click.option("--subject", default="tidal", show_default=True)
def keys_token(
    components: tuple[str, ...],
    instances: tuple[str, ...],
    relations: tuple[str, ...],
    write: bool,
    ttl: float,
    subject: str,
) -> None:
    """Print a JWT with this scope, signed with TIDAL_JWT_SECRET."""
    secret = os.environ.get(server.JWT_SECRET_ENV)
    if not secret:
        raise click.ClickException(f"set {server.JWT_SECRET_ENV} (the server must have the same one)")
    click.echo(
        server.issue_token(secret, _scope(components, instances, relations, write), ttl_seconds=ttl, subject=subject)
    )


COMMANDS = [keys]
