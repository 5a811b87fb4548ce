"""The relations of evaluation: ``eval_examples`` (datasets), ``eval_runs``,
``eval_scores`` and ``eval_votes``. They are ordinary relations: ``app.sql``
reads them, and they can trigger update ops like any other."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from ..relations.record import Record


class Example(Record):
    """One row of a dataset (the ``eval_examples`` relation). ``input`` is
    what the target gets (a flow's props: a dict), ``reference`` what a good
    answer is, when there is one."""

    __relation__ = "eval_examples"

    dataset: str
    input: Any
    reference: Any = None
    tags: list[str] = Field(default_factory=list)


class EvalRun(Record):
    """One evaluation (the ``eval_runs`` relation): a dataset (or a flow's
    logged runs) through a target, scored by some scorers."""

    __relation__ = "eval_runs"

    name: str
    kind: str = "offline"
    """``offline`` (evals.run), ``online`` (evals.online) or ``replay``."""
    dataset: str = ""
    dataset_version: str = ""
    """A hash of the dataset's rows as they were when the run started."""
    target: str = ""
    scorers: list[str] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    summary: Any = None
    """Per scorer: n, mean, low, high, errors (Report.as_dict()'s ``scorers``)."""


class EvalScore(Record):
    """One score of one output by one scorer (the ``eval_scores`` relation).
    A scorer that could not score (a judge whose replies never fit, a target
    that raised) leaves ``score`` empty and says why in ``error``."""

    __relation__ = "eval_scores"

    eval_run_id: str
    example_id: str
    scorer: str
    judge_model: str | None = None
    """The model that judged, for AI judges."""
    prompt_version: str | None = None
    """A hash of the judge's prompt template and rubric."""
    target_run_id: str | None = None
    """The run that produced the output, when the target is a flow."""
    score: float | None = None
    label: str | None = None
    reason: str | None = None
    error: str | None = None
    output: Any = None


class EvalVote(Record):
    """One pairwise verdict between two contestants of a leaderboard (the
    ``eval_votes`` relation): a user's vote or a judge's."""

    __relation__ = "eval_votes"

    board: str
    a: str
    b: str
    winner: str
    """``a``, ``b``, ``tie`` or ``inconsistent`` (a judge that changed its
    mind when the order was swapped)."""
    voter: str = "user"
    """``user`` or the judging model's name."""
    prompt_version: str | None = None
    example_id: str | None = None
    reason: str | None = None


class DriftEvent(Record):
    """A drift a monitor detected and the refit it led to (the
    ``drift_events`` relation): what the detector saw, the shadow check of
    the candidate state against the serving one, and the outcome."""

    __relation__ = "drift_events"

    monitor: str
    component: str
    instance: str
    trigger: str = "drift"
    """``drift`` (the detector fired) or ``followup`` (a refit as labels of
    the new regime accumulate after a drift)."""
    detected_at: datetime
    labels_seen: int = 0
    """Values the monitor had watched when it fired."""
    detector: dict[str, Any] = Field(default_factory=dict)
    """The detector's stats: its name, means before and after, its own numbers."""
    outcome: str = "pending"
    """``pending``, then ``promoted``, ``rejected`` (the candidate is kept
    aside) or ``failed`` (the refit raised; the serving state is untouched)."""
    old_score: float | None = None
    new_score: float | None = None
    """Shadow scores of the serving and the candidate state on the held-out rows."""
    shadow_n: int = 0
    train_n: int = 0
    serving_version: int | None = None
    """The target instance's version when the refit ran: the state a
    promotion replaces (``tidal state rollback`` goes back to it)."""
    keys: list[str] = Field(default_factory=list)
    """The state keys the candidate changes."""
    error: str | None = None
    finished_at: datetime | None = None
