"""``tidal serve`` and ``tidal keys``: the HTTP API from the command line.

Imports of FastAPI and uvicorn wait until a command runs, so that other
``tidal`` commands start fast."""

from __future__ import annotations

import ipaddress
import json
import os
from typing import TYPE_CHECKING, Any

import click

from .limits import DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    from ..app import App
    from ..relations import Record

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def _app_options(fn: Any) -> Any:
    fn = click.option(
        "--db", default=None, help="Relations database URL (default: TIDAL_DB or the store's SQLite file)."
    )(fn)
    fn = click.option("--store", default=None, help="Store URL (default: TIDAL_STORE or sqlite in TIDAL_HOME).")(fn)
    return click.option("--app", "app_name", default="default", show_default=True, help="App name.")(fn)


def _open(app_name: str, store: str | None, db: str | None) -> App:
    from ..app import App

    return App(app_name, store=store, db=db)


def user_relations() -> list[type[Record]]:
    """Record classes defined outside Tidal in this process (what the
    loaded TARGET defines or imports)."""
    from ..relations import Record

    found: list[type[Record]] = []
    todo = list(Record.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if not cls.__module__.startswith("tidal."):
            found.append(cls)
    return sorted(found, key=lambda c: c.relation())


@click.command()
@click.argument("target")
@_app_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--api-key-required", is_flag=True, help="Require an API key (tidal keys create) or a JWT on every call.")
@click.option("--no-updates", is_flag=True, help="Queue updates but leave running them to `tidal worker`.")
@click.option("--max-body-bytes", default=DEFAULT_MAX_BODY_BYTES, show_default=True, type=click.IntRange(min=1))
@click.option("--no-docs", is_flag=True, help="Serve no /openapi.json and /docs (they need no auth).")
@click.option("--log-level", default="info", show_default=True)
def serve(
    target: str,
    app_name: str,
    store: str | None,
    db: str | None,
    host: str,
    port: int,
    api_key_required: bool,
    no_updates: bool,
    max_body_bytes: int,
    no_docs: bool,
    log_level: str,
) -> None:
    """Serve the components defined in TARGET (a module or .py file) over HTTP.

    Listens on 127.0.0.1 unless --host says otherwise; any other interface
    needs --api-key-required."""
    if not is_loopback(host) and not api_key_required:
        raise click.UsageError(
            f"refusing to listen on {host} without auth: anyone who reaches it could run flows and read state. "
            "Pass --api-key-required (and create keys with `tidal keys create`), or listen on 127.0.0.1."
        )
    import uvicorn

    from ..commands._common import app_with_target
    from .auth import JWT_SECRET_ENV, Auth
    from .factory import create_app

    app = app_with_target(target, app_name, store, db=db)
    if not app.components:
        raise click.ClickException(f"{target} defines no components used by app {app_name!r}")
    auth = Auth.for_app(app) if api_key_required else None
    api = create_app(
        app,
        auth=auth,
        relations=user_relations(),
        max_body_bytes=max_body_bytes,
        run_updates=not no_updates,
        openapi=not no_docs,
    )
    if not no_updates and any(c.runs_in_background for c in app.components.values()):
        # Start now, not on the first request: queued ops, triggers and schedules run from the start.
        app.executor  # noqa: B018
    mode = "off (loopback only)"
    if auth is not None:
        mode = "API keys" + (" and JWTs" if auth.jwt_secret else f" (set {JWT_SECRET_ENV} to accept JWTs)")
    click.echo(f"serving {', '.join(sorted(app.components))} of app {app.name!r} on http://{host}:{port}", err=True)
    click.echo(f"auth: {mode}; updates: {'tidal worker' if no_updates else 'this process'}", err=True)
    try:
        uvicorn.run(api, host=host, port=port, log_level=log_level)
    finally:
        app.close()


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
    from .auth import Scope

    restricted = bool(components or instances)
    return Scope(
        components=components or ("*",),
        instances=instances or ("*",),
        relations=relations or (() if restricted else ("*",)),
        write=write,
    )


@click.group()
def keys() -> None:
    """Manage API keys (stored hashed in the app's database)."""


@keys.command("create")
@_app_options
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
    from .keys import KeyStore

    app = _open(app_name, store, db)
    try:
        key, record = KeyStore(app.db).create(name, _scope(components, instances, relations, write))
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps({"key": key, **record.as_dict()}))
        return
    click.echo(key)
    click.echo(f"key {record.id} ({name}): {json.dumps(record.scope.as_dict())}; it is not shown again", err=True)


@keys.command("list")
@_app_options
@click.option("--json", "as_json", is_flag=True)
def keys_list(app_name: str, store: str | None, db: str | None, as_json: bool) -> None:
    """List keys (ids, names, scopes; never the keys themselves)."""
    from rich.console import Console
    from rich.table import Table

    from .keys import KeyStore

    app = _open(app_name, store, db)
    try:
        records = KeyStore(app.db).list()
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
@_app_options
def keys_revoke(key_id: str, app_name: str, store: str | None, db: str | None) -> None:
    """Revoke the key KEY_ID: it stops working at once."""
    from ..exceptions import RecordNotFoundError
    from .keys import KeyStore

    app = _open(app_name, store, db)
    try:
        record = KeyStore(app.db).revoke(key_id)
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
    from .auth import JWT_SECRET_ENV, issue_token

    secret = os.environ.get(JWT_SECRET_ENV)
    if not secret:
        raise click.ClickException(f"set {JWT_SECRET_ENV} (the server must have the same one)")
    click.echo(issue_token(secret, _scope(components, instances, relations, write), ttl_seconds=ttl, subject=subject))


def register(group: click.Group) -> None:
    """Add ``serve`` and ``keys`` to the ``tidal`` command group."""
    group.add_command(serve)
    group.add_command(keys)
