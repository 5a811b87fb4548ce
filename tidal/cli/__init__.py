"""The ``tidal`` command line: the click group :func:`main` and one module
per command group, each listing its commands in ``COMMANDS``.

Commands act through :mod:`tidal.admin` and get their app from
:mod:`tidal.cli.target`; :mod:`tidal.cli.output` holds the exit codes.
Heavy imports (FastAPI, uvicorn, the examples) wait until a command runs."""

from __future__ import annotations

import click

from .. import __version__
from . import demo, evals, experiments, flows, keys, models, queue, rag, runs, serve, sql, state, worker
from .output import TidalGroup


@click.group(cls=TidalGroup)
@click.version_option(__version__, prog_name="tidal")
def main() -> None:
    """Tidal: AI application state that keeps itself fresh.

    Exit status: 0 success, 1 the operation failed, 2 usage error (an
    argument, option or setting), 3 not found (unknown component, instance,
    key, version or op).
    Read commands print one JSON document with --json."""


def _register(group: click.Group) -> None:
    for module in (demo, worker, serve, keys, flows, state, queue, runs, sql, models, evals, rag, experiments):
        for command in module.COMMANDS:
            group.add_command(command)


_register(main)


__all__ = ["main"]
