"""``tidal sql``: read-only SQL over the app's relations, with bound
parameters only."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .. import admin
from .output import emit, json_option
from .target import app_options, open_app


def _params(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        try:
            out[name] = json.loads(raw)  # 5, 1.5, true, null, "text"
        except json.JSONDecodeError:
            out[name] = raw  # anything else is text
    return out


@click.command("sql")
@click.argument("query")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Bind :NAME to VALUE (a JSON literal, else text). Repeatable.")  # fmt: skip
@app_options
@json_option
def sql(query: str, params: tuple[str, ...], app_name: str, store: str | None, as_json: bool) -> None:
    """Run read-only QUERY (``:name`` placeholders) over the app's relations,
    runs and feedback included. Exit status 1 on an SQL error."""
    bound = _params(params)
    with open_app(app_name, store) as app:
        try:
            result = admin.sql(app, query, bound)
        except Exception as exc:  # the database's own message says what is wrong with the SQL
            if isinstance(exc, click.ClickException):
                raise
            message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise click.ClickException(f"SQL failed: {message}") from exc
    if as_json:
        emit(result.as_dict())
        return
    table = Table(*result.columns)
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    Console().print(table)


COMMANDS = [sql]
