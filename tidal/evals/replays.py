"""Replay: logged production inputs through another variant, judged new
against old pairwise: comparative evaluation on real traffic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ..app import App
from ..component import Component
from ..relations.builtin import Run
from .judges import Pairwise
from .ranking import judge_vote
from .records import EvalRun
from .report import Report
from .runner import Caller, Target, Task, execute, now
from .scorers import Score, Scorer

LOGGED = "logged"


class _Duel(Scorer):
    """The pairwise judge of a replay as a scorer: the new output (a)
    against the old one (the logged result, given as the reference, or the
    ``against`` target's output); each verdict also a vote on ``board``."""

    def __init__(self, app: App, board: str, judge: Pairwise, new: str, old: str, against: Caller | None) -> None:
        self.app, self.board, self.judge = app, board, judge
        self.new, self.old, self.against = new, old, against
        self.name, self.model, self.prompt_version = judge.name, judge.model, judge.prompt_version

    def __call__(self, input: Any, output: Any, reference: Any = None) -> Score:
        old = reference if self.against is None else self.against(input)[0]
        verdict = judge_vote(self.app, self.board, self.judge, input, (self.new, output), (self.old, old))
        if verdict.error is not None:
            return Score.failed(verdict.error)
        return Score(verdict.score, label=verdict.winner, reason=verdict.reason)


def logged_runs(app: App, component: Component, flow: str, since: datetime | None, limit: int) -> list[Run]:
    """The latest ``limit`` successful serve runs of the flow since ``since``, oldest first."""
    app.flush_runs()
    where = {"component": component.name, "flow": flow, "kind": "serve", "status": "ok"}
    runs = app.query(Run, where, order_by="-created_at", limit=limit)
    if since is not None:
        runs = [r for r in runs if (r.started_at or r.created_at or since) >= since]
    return runs[::-1]


def replay(
    app: App,
    component: Component,
    flow: str,
    *,
    variant: Target,
    judge: Pairwise,
    against: Target | str = LOGGED,
    since: datetime | timedelta | None = None,
    limit: int = 100,
    name: str | None = None,
    board: str | None = None,
    variant_name: str | None = None,
    concurrency: int = 4,
    progress: bool = True,
) -> Report:
    """Re-run the props of ``flow``'s logged serve runs (the latest
    ``limit``, since ``since``: a time or an age) through ``variant`` and
    have ``judge`` compare each new output with the old one: the logged
    result (``against="logged"``) or another target's output::

        report = evals.replay(app, Assistant, "ask", since=timedelta(days=1),
                              variant=Assistant.flow("ask", instance="friendly"), judge=evals.Pairwise(llm))
        report.scorers["pairwise"].mean    # the new variant's win rate (ties count half)

    Every verdict is a score row (example id: the logged run's id) and a
    vote on the leaderboard ``board`` (default ``replay:Component.flow``)."""
    if isinstance(since, timedelta):
        since = datetime.now(UTC) - since
    new = Caller(variant)
    old = None if isinstance(against, str) else Caller(against)
    if isinstance(against, str) and against != LOGGED:
        raise ValueError(f"against is {LOGGED!r}, a flow or a function; got {against!r}")
    new_name = variant_name or new.name
    old_name = LOGGED if old is None else old.name
    if new_name == old_name:
        raise ValueError(f"the variant and what it is judged against have one name, {new_name!r}: pass variant_name=")
    target = f"{component.name}.{flow}"
    board = board or f"replay:{target}"
    duel = _Duel(app, board, judge, new_name, old_name, old)
    record = app.insert(
        EvalRun(
            name=name or f"replay:{target}:{new_name}",
            kind="replay",
            dataset=f"runs:{target}",
            target=f"{new_name} vs {old_name}",
            scorers=[duel.name],
            started_at=now(),
        )
    )
    runs = logged_runs(app, component, flow, since, limit)
    tasks = [Task(r.id, r.props, r.result) for r in runs]
    return execute(app, record, tasks, new, [duel], concurrency=concurrency, progress=progress)
