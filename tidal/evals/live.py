"""Online evaluation: score a sample of a flow's production runs in the
background.

The runs log writes ``runs`` rows in batches straight into the table
(tidal/engine/runlog.py), without the outbox that relation triggers read,
so a trigger ``on=Run`` would never fire. Instead each online evaluator is
a component of its own with one scheduled update op (``every=``): it reads
the flow's serve runs written since a watermark kept in its state, keeps
those whose id hashes under the sample rate, scores them and moves the
watermark, all in an update op: durable (the watermark is versioned state;
runs written while nothing ran are scored on the next tick), scaled out
like any update op, and never on the serve path. Score rows have ids made
from the run and the scorer, so an op that is re-run after a crash
rewrites the same rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..app import App
from ..component import Component
from ..instance import Instance
from ..relations.builtin import Run
from .records import EvalRun, EvalScore
from .runner import now, score_rows, scorers_of
from .scorers import Scorer

OVERLAP = timedelta(seconds=30)
"""How far before the watermark each scan looks again: runs logs of other
processes write in batches, with their own clocks, so a run can land with a
``created_at`` a little before one already seen. Ids seen in this window are
kept, so nothing is scored twice."""

PAGE = 500
"""Runs read per query while scanning back to the watermark."""

INSTANCE = "watermark"
"""The online evaluator's one instance."""


def sampled(run_id: str, fraction: float) -> bool:
    """Whether the run with this id is in a ``fraction`` sample: a hash of
    the id, so every process (and every re-run) decides the same."""
    if fraction >= 1.0:
        return True
    point = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big") / 2.0**64
    return point < fraction


def row_id(eval_run_id: str, run_id: str, scorer: str) -> str:
    return "sc-" + hashlib.sha256(f"{eval_run_id}\0{run_id}\0{scorer}".encode()).hexdigest()[:24]


def _after(run: Run, floor: datetime) -> bool:
    return run.created_at is not None and run.created_at >= floor


def _began(run: Run, start: datetime) -> bool:
    # A run still in a runs log's buffer when the evaluator started is
    # written after it: its own start time tells.
    return run.started_at is None or run.started_at >= start


@dataclass
class Online:
    """A running online evaluator: ``component`` is its scheduled
    component, ``eval_run_id`` the ``eval_runs`` row its scores belong to."""

    name: str
    eval_run_id: str
    component: Component
    watched: Component
    flow: str
    sample: float
    scorers: list[Scorer]

    def instance(self) -> Instance:
        return self.component(INSTANCE)

    def new_runs(self, start: datetime, after: datetime, seen: set[str]) -> list[Run]:
        """Serve runs of the watched flow written since ``after`` (less the
        overlap, never before ``start``) and not in ``seen``, oldest first."""
        app = self.component.app
        app.flush_runs()  # this process's runs; other processes write theirs within the overlap
        floor = max(after - OVERLAP, start)
        found: list[Run] = []
        offset = 0
        where = {"component": self.watched.name, "flow": self.flow, "kind": "serve", "status": "ok"}
        while True:
            page = app.query(Run, where, order_by="-created_at", limit=PAGE, offset=offset)
            found += [r for r in page if r.id not in seen and _after(r, floor) and _began(r, start)]
            last = page[-1].created_at if page else None
            if len(page) < PAGE or last is None or last < floor:
                break
            offset += PAGE
        found.sort(key=lambda r: (r.created_at or datetime.min, r.id))
        return found

    def score(self, runs: Iterable[Run]) -> list[EvalScore]:
        """Score the sampled ``runs`` and store the rows."""
        rows: list[EvalScore] = []
        for r in runs:
            if not sampled(r.id, self.sample):
                continue
            for row in score_rows(self.eval_run_id, r.id, self.scorers, r.props, r.result, None, target_run_id=r.id):
                rows.append(row.model_copy(update={"id": row_id(self.eval_run_id, r.id, row.scorer)}))
        app = self.component.app
        if rows:
            app.upsert_many(rows)
        return rows


def online(
    component: Component,
    flow: str = "ask",
    *,
    sample: float = 0.05,
    scorers: Iterable[Scorer | Callable[..., Any]],
    every: str | float = "10s",
    name: str | None = None,
    since: datetime | None = None,
) -> Online:
    """Score a ``sample`` fraction of ``component``'s ``flow`` runs in the
    background, every ``every``::

        evals.online(Assistant, flow="ask", sample=0.05, scorers=[judge])

    A scorer sees the run's props as input and its result as output (no
    reference). Scores are rows of ``eval_scores`` under the eval run named
    ``name`` (default ``online:Component.flow``), so ``evals.Report.load``
    and ``tidal evals report`` read them. Runs written before the evaluator
    first started (or before ``since``) are not scored."""
    if not 0.0 < sample <= 1.0:
        raise ValueError(f"sample must be a fraction in (0, 1], got {sample!r}")
    if flow not in component.serve_routes:
        raise ValueError(f"component {component.name} has no serve op for flow {flow!r}")
    app: App = component.app
    found = scorers_of(scorers)
    label = name or f"online:{component.name}.{flow}"
    eval_run_id = "online-" + hashlib.sha256(label.encode()).hexdigest()[:24]
    if app.get(EvalRun, eval_run_id) is None:
        app.upsert(
            EvalRun(
                id=eval_run_id,
                name=label,
                kind="online",
                dataset=f"runs:{component.name}.{flow}",
                target=f"{component.name}.{flow}",
                scorers=[s.name for s in found],
                started_at=now(),
            )
        )
    evaluator = app.component(f"evals-online-{eval_run_id[7:19]}")
    handle = Online(label, eval_run_id, evaluator, component, flow, sample, found)

    @evaluator.init_state
    def start() -> dict[str, Any]:
        start = since or now()
        return {"start": start, "after": start, "seen": {}}

    @evaluator.update(every=every, instance=INSTANCE)
    def tick(state: Any, props: Any) -> dict[str, Any]:
        after: datetime = state["after"]
        runs = handle.new_runs(state["start"], after, set(state["seen"]))
        if not runs:
            return {}
        handle.score(runs)
        newest = max([r.created_at for r in runs if r.created_at], default=after)
        # Only ids inside the overlap can come back; older ones are dropped.
        seen = {**state["seen"], **{r.id: r.created_at for r in runs if r.created_at}}
        seen = {k: t for k, t in seen.items() if t >= newest - OVERLAP}
        return {"after": newest, "seen": seen}

    app.flush_runs()  # runs made before now get their times before the watermark is set
    handle.instance()  # creates the watermark now, so only later runs count
    return handle
