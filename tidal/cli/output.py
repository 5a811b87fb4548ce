"""What every command prints and exits with: the exit codes scripts rely
on, JSON output, and the small formatters of the tables.

==== ============================================================
0    success
1    the operation failed (a failed update, an SQL error, a conflict)
2    usage error: a missing or malformed argument, option or setting
     (a store URL, a ``TIDAL_*`` variable)
3    not found: an unknown component, instance, state key, version or op
==== ============================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..exceptions import ConfigError, NotFoundError, TidalError, UnknownFlowError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3

F = TypeVar("F", bound=Callable[..., Any])


class NotFoundExit(click.ClickException):
    """A ClickException that exits with status 3."""

    exit_code = EXIT_NOT_FOUND


class UsageExit(click.ClickException):
    """A ClickException that exits with status 2: a malformed setting (a
    store URL, an environment variable), which has no option to point at."""

    exit_code = EXIT_USAGE


class TidalGroup(click.Group):
    """The ``tidal`` group: Tidal's errors become messages with the
    documented exit codes instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NotFoundError, UnknownFlowError) as exc:
            raise NotFoundExit(str(exc)) from exc
        except ConfigError as exc:
            raise UsageExit(str(exc)) from exc
        except TidalError as exc:
            raise click.ClickException(str(exc)) from exc


def json_option(fn: F) -> F:
    """``--json``: print one JSON document on stdout instead of tables."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for scripts).")(fn)


def emit(data: Any) -> None:
    """Write ``data`` as one JSON document on stdout."""
    click.echo(json.dumps(data, default=str))


def parse_json_object(value: str, option: str) -> dict[str, Any]:
    """``value`` parsed as a JSON object, or a usage error naming ``option``."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"expected a JSON object, got {value!r} ({exc})", param_hint=option) from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter(
            f"expected a JSON object, got a JSON {type(parsed).__name__}: {value!r}", param_hint=option
        )
    return parsed


def ms(value: float | None) -> str:
    """Milliseconds for a table cell; ``-`` when unknown."""
    return "-" if value is None else f"{value:.1f} ms"


def usd(value: float) -> str:
    """US dollars for a table cell: cents, or four decimals under a cent."""
    return "$0" if value == 0 else f"${value:.4f}" if value < 0.01 else f"${value:.2f}"


def when(epoch: float | None) -> str:
    """Epoch seconds as UTC date and time for a table cell; ``-`` when unknown."""
    if epoch is None:
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
