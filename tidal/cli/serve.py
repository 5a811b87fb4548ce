"""``tidal serve``: the HTTP API (and dashboard) of the app TARGET defines.

Imports of FastAPI and uvicorn wait until the command runs, so that other
``tidal`` commands start fast."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import click

from .. import relations, server
from .target import app_options, db_option, load_app, require_components

if TYPE_CHECKING:
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


def user_relations() -> list[type[Record]]:
    """Record classes defined outside Tidal in this process (what the
    loaded TARGET defines or imports)."""
    found: list[type[Record]] = []
    todo = list(relations.Record.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if not cls.__module__.startswith("tidal."):
            found.append(cls)
    return sorted(found, key=lambda c: c.relation())


@click.command()
@click.argument("target")
@app_options
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--api-key-required", is_flag=True, help="Require an API key (tidal keys create) or a JWT on every call.")
@click.option("--no-updates", is_flag=True, help="Queue updates but leave running them to `tidal worker`.")
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="Largest request body accepted [default: tidal.server.DEFAULT_MAX_BODY_BYTES, 1 MiB].",
)
@click.option("--no-docs", is_flag=True, help="Serve no /openapi.json and /docs (they need no auth).")
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="uvicorn's access log (a line per request, at --log-level info); off spares each request writing one.",
)
def serve(
    target: str,
    app_name: str,
    store: str | None,
    db: str | None,
    host: str,
    port: int,
    api_key_required: bool,
    no_updates: bool,
    max_body_bytes: int | None,
    no_docs: bool,
    log_level: str,
    access_log: bool,
) -> None:
    """Serve the components defined in TARGET (a module or .py file, or
    TARGET:app naming its tidal.App) over HTTP.

    Listens on 127.0.0.1 unless --host says otherwise; any other interface
    needs --api-key-required."""
    if not is_loopback(host) and not api_key_required:
        raise click.UsageError(
            f"refusing to listen on {host} without auth: anyone who reaches it could run flows and read state. "
            "Pass --api-key-required (and create keys with `tidal keys create`), or listen on 127.0.0.1."
        )
    import uvicorn

    app = load_app(target, app_name, store, db=db)
    require_components(app, target)
    auth = server.Auth.for_app(app) if api_key_required else None
    api = server.create_app(
        app,
        auth=auth,
        relations=user_relations(),
        max_body_bytes=max_body_bytes or server.DEFAULT_MAX_BODY_BYTES,
        run_updates=not no_updates,
        openapi=not no_docs,
    )
    if not no_updates and any(c.runs_in_background for c in app.components.values()):
        # Start now, not on the first request: queued ops, triggers and schedules run from the start.
        app.executor  # noqa: B018
    mode = "off (loopback only)"
    if auth is not None:
        mode = "API keys" + (" and JWTs" if auth.jwt_secret else f" (set {server.JWT_SECRET_ENV} to accept JWTs)")
    click.echo(f"serving {', '.join(sorted(app.components))} of app {app.name!r} on http://{host}:{port}", err=True)
    click.echo(f"auth: {mode}; updates: {'tidal worker' if no_updates else 'this process'}", err=True)
    try:
        uvicorn.run(api, host=host, port=port, log_level=log_level, access_log=access_log)
    finally:
        app.close()


COMMANDS = [serve]
