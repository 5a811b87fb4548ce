"""Command groups of the ``tidal`` command line, one module each; each
registers itself on the ``main`` group through :func:`register`."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add every command of this package to ``main``."""
    from . import flows, queue, runs, sql, state

    for module in (flows, queue, runs, sql, state):
        for command in module.COMMANDS:
            main.add_command(command)
