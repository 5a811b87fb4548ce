"""``tidal experiments report NAME``: an experiment's report from the app's
relations (runs, feedback, eval_scores)."""

from __future__ import annotations

import click

from .output import emit, json_option
from .target import app_options, open_app


@click.group("experiments")
def group() -> None:
    """Experiments: Variants params compared on feedback or judge scores."""


@group.command("report")
@click.argument("name")
@click.option("--metric", default="feedback", show_default=True, help="'feedback' or the name of a scorer (a judge).")
@click.option("--alpha", default=0.05, show_default=True, help="Error rate of the intervals, all variants together.")
@app_options
@json_option
def report(name: str, metric: str, alpha: float, app_name: str, store: str | None, as_json: bool) -> None:
    """The report of experiment NAME (Component.param): per variant runs, n,
    mean and an always-valid interval, and what they say."""
    with open_app(app_name, store) as app:
        result = app.experiment(name).report(metric, alpha=alpha)
    if as_json:
        emit(result.as_dict())
        return
    click.echo(str(result))


COMMANDS = [group]
