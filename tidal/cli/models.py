"""``tidal models serve``: the OpenAI HTTP API in front of the stand-in model
(for tests and demos) or a local model.

FastAPI and uvicorn load when the server starts (:mod:`tidal.models.http`)."""

from __future__ import annotations

import json
import sys

import click

from ..models import standin
from ..models.backend import Backend
from ..models.faults import Fault, FaultError, parse_faults
from ..models.http import LOCAL_BACKENDS, local_backend, serve_backend
from .model_usage import MODEL_COMMANDS
from .serve import is_loopback


@click.group()
def models() -> None:
    """Models: serve one over the OpenAI API; what their calls cost."""


def _faults(values: tuple[str, ...]) -> list[Fault]:
    out: list[Fault] = []
    for value in values:
        try:
            out.extend(parse_faults(json.loads(value)))
        except (json.JSONDecodeError, FaultError) as exc:
            raise click.BadParameter(f"{value!r}: {exc}", param_hint="--fault") from exc
    return out


@models.command("serve")
@click.option("--stand-in", "stand_in", is_flag=True, help="Serve the deterministic stand-in model.")
@click.option("--local", metavar="NAME", help=f"Serve a local model: {', '.join(sorted(LOCAL_BACKENDS))}.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", default=8100, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port (printed)."
)
@click.option("--script", type=click.Path(exists=True, dir_okay=False), help="The stand-in's script (a JSON list).")
@click.option("--fault", "faults", multiple=True, metavar="JSON", help="A fault to inject (repeatable).")
@click.option("--api-key", help="Require 'Authorization: Bearer KEY' on every request.")
@click.option("--context-window", type=click.IntRange(min=1), default=standin.DEFAULT_CONTEXT_WINDOW, show_default=True)
@click.option("--log-level", default="warning", show_default=True)
def serve(
    stand_in: bool,
    local: str | None,
    host: str,
    port: int,
    script: str | None,
    faults: tuple[str, ...],
    api_key: str | None,
    context_window: int,
    log_level: str,
) -> None:
    """Serve a model over the OpenAI HTTP API at http://HOST:PORT/v1.

    Prints one line, `serving <model> on <base URL>`, once the port is bound.
    The stand-in answers every request with a pure function of it; see
    docs/models.md for its script and fault formats."""
    if stand_in == (local is not None):
        raise click.UsageError("give exactly one of --stand-in or --local NAME")
    if not is_loopback(host) and api_key is None:
        raise click.UsageError(f"refusing to listen on {host} without --api-key: anyone who reaches it could use it")
    injected = _faults(faults)
    if local is not None:
        if script is not None:
            raise click.UsageError("--script is for the stand-in (--stand-in)")
        backend: Backend = local_backend(local)
        name = local
    else:
        try:
            rules = standin.load_script(script) if script else ()
        except standin.ScriptError as exc:
            raise click.BadParameter(str(exc), param_hint="--script") from exc
        backend = standin.StandIn(script=rules, context_window=context_window)
        name = "stand-in"

    def announce(url: str) -> None:
        click.echo(f"serving {name} on {url}")
        sys.stdout.flush()

    serve_backend(backend, host, port, api_key=api_key, faults=injected, log_level=log_level, announce=announce)


for _command in MODEL_COMMANDS:
    models.add_command(_command)

COMMANDS = [models]
