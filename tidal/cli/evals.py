"""``tidal evals report`` and ``tidal evals leaderboard``: an eval run's
report and a leaderboard's standings, from the app's relations."""

from __future__ import annotations

import click
from rich.console import Console

from .. import evals
from .output import emit, json_option
from .target import app_options, open_app


@click.group("evals")
def group() -> None:
    """Evaluation results: eval runs' reports and pairwise leaderboards."""


@group.command("report")
@click.argument("name")
@app_options
@json_option
def report(name: str, app_name: str, store: str | None, as_json: bool) -> None:
    """The report of the latest eval run named NAME (or with the id NAME):
    per scorer n, mean, 95% interval and errors. Exit status 3 if none."""
    with open_app(app_name, store) as app:
        result = evals.Report.load(app, name)
    if as_json:
        emit(result.as_dict())
        return
    Console().print(result.table())


@group.command("leaderboard")
@click.argument("name")
@click.option("--resamples", default=1000, show_default=True, help="Bootstrap resamples behind each interval.")
@click.option("--drop-inconsistent", is_flag=True, help="Leave out judges' inconsistent verdicts (default: ties).")
@app_options
@json_option
def leaderboard(
    name: str, resamples: int, drop_inconsistent: bool, app_name: str, store: str | None, as_json: bool
) -> None:
    """The standings of leaderboard NAME from its votes: Bradley-Terry
    scores with bootstrap intervals. Exit status 3 if it has no votes."""
    with open_app(app_name, store) as app:
        board = evals.leaderboard(app, name, resamples=resamples, inconsistent="drop" if drop_inconsistent else "tie")
    if as_json:
        emit(board.as_dict())
        return
    Console().print(board.table())


COMMANDS = [group]
