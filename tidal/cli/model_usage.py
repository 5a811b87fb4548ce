"""``tidal models usage``: what the app's model calls cost, how many tokens
they used and how fast they answered, per model, per component and flow,
or per instance and day, from this app's database or from a running
``tidal serve`` (``--url``, through its dashboard API).

The commands are listed in ``MODEL_COMMANDS`` for the ``tidal models``
group to add (that group holds ``tidal models serve`` as well)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .. import admin
from ..core.triggers import parse_every
from ..exceptions import DefinitionError
from .output import emit, json_option, ms, usd
from .target import app_options, open_app


def _window(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    try:
        return timedelta(seconds=parse_every(value, "--window"))
    except DefinitionError:
        raise click.BadParameter(f"{value!r} is not a duration; use e.g. '30m', '6h', '1d', '7d'") from None


def _local(app_name: str, store: str | None, by: str, window: timedelta, component: str | None) -> list[dict[str, Any]]:
    names = None if component is None else [component]
    with open_app(app_name, store) as app:
        if by == "model":
            rows: list[Any] = admin.usage_by_model(app, window=window, components=names)
        elif by == "flow":
            rows = admin.usage_by_flow(app, window=window, components=names)
        else:
            rows = admin.usage_by_instance_day(app, window=window, components=names)
        return [r.as_dict() for r in rows]


def _remote(url: str, api_key: str | None, by: str, window: timedelta, component: str | None) -> list[dict[str, Any]]:
    """The same rows from a running ``tidal serve``'s dashboard API."""
    import httpx  # only --url needs it, and every tidal command imports this module

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    base = url.rstrip("/") + "/dashboard/api"
    params: dict[str, Any] = {"window_s": window.total_seconds()}
    if component is not None and by != "instance-day":
        path, key = f"/components/{component}/models", "models" if by == "model" else "flows"
    else:
        path, key = "/models/usage", "instance_days" if by == "instance-day" else f"{by}s"
        params |= {"by": by, "limit": 100_000}
    try:
        response = httpx.get(base + path, params=params, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from exc
    if response.status_code != 200:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        hint = " (pass --api-key or set TIDAL_API_KEY)" if response.status_code == 401 else ""
        raise click.ClickException(f"{url} answered {response.status_code}: {message}{hint}")
    rows: list[dict[str, Any]] = response.json()[key]
    if component is not None and by == "instance-day":
        rows = [r for r in rows if r["component"] == component]
    return rows


def _span(window: timedelta) -> str:
    seconds = window.total_seconds()
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _table(by: str, rows: list[dict[str, Any]]) -> Table:
    if by == "instance-day":
        table = Table("day", "component", "instance", "calls", "errors", "tokens", "cost")
        for r in rows:
            table.add_row(r["day"], r["component"], r["instance"], str(r["calls"]), str(r["errors"]),
                          f"{r['tokens']:,}", usd(r["cost"]))  # fmt: skip
        return table
    first = ["model"] if by == "model" else ["component", "flow"]
    table = Table(*first, "calls", "errors", "prompt", "completion", "cost", "p50", "p95", "ttft p50", "cache hits",
                  "retries")  # fmt: skip
    for r in rows:
        names = [r["model"]] if by == "model" else [r["component"] or "-", r["flow"] or "-"]
        table.add_row(*names, str(r["calls"]), str(r["errors"]), f"{r['prompt_tokens']:,}",
                      f"{r['completion_tokens']:,}", usd(r["cost"]), ms(r["latency_p50_ms"]), ms(r["latency_p95_ms"]),
                      ms(r["ttft_p50_ms"]), f"{r['cache_hit_rate']:.0%}", str(r["retries"]))  # fmt: skip
    return table


@click.command("usage")
@click.option("--window", default="1d", show_default=True, callback=_window,
              help="How far back to look: a duration such as 30m, 6h, 1d, 7d.")  # fmt: skip
@click.option("--by", type=click.Choice(admin.GROUPINGS), default="model", show_default=True,
              help="Group per model, per component and flow, or per instance and day (UTC).")  # fmt: skip
@click.option("--component", default=None, help="Only calls made by this component's flows.")
@click.option("--url", default=None, metavar="URL",
              help="A running `tidal serve` (e.g. http://127.0.0.1:8000): read through its dashboard API.")  # fmt: skip
@click.option("--api-key", envvar="TIDAL_API_KEY", default=None,
              help="API key or JWT for --url when the server requires one (default: TIDAL_API_KEY).")  # fmt: skip
@app_options
@json_option
def usage(window: timedelta, by: str, component: str | None, url: str | None, api_key: str | None, app_name: str,
          store: str | None, as_json: bool) -> None:  # fmt: skip
    """Model calls over the window: calls, errors, tokens, cost (USD),
    latency p50/p95, time to first token, cache hits and retries per model
    or per component and flow; or calls, tokens and cost per instance and
    day, the cost per user per day (JSON: a list of rows)."""
    if url is not None:
        rows = _remote(url, api_key, by, window, component)
    else:
        rows = _local(app_name, store, by, window, component)
    if as_json:
        emit(rows)
        return
    Console().print(_table(by, rows))
    total = sum(r["cost"] for r in rows)
    click.echo(f"{sum(r['calls'] for r in rows)} calls, {usd(total)} in the last {_span(window)}")


MODEL_COMMANDS = [usage]
"""The commands of the ``tidal models`` group that this module holds."""
