"""Reports: per scorer n, mean, interval and errors of one eval run; and
:func:`compare`, paired differences between two runs on the examples they
share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from rich.table import Table

from ..app import App
from ..exceptions import NotFoundError
from .records import EvalRun, EvalScore
from .stats import Interval, mean_interval, p_value


class EvalNotFoundError(NotFoundError):
    """Raised when no eval run (or leaderboard) has the name asked for."""


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@dataclass(frozen=True)
class ScorerSummary:
    """One scorer's figures in a report: ``n`` scores, their mean and
    interval, and ``errors`` (outputs it could not score)."""

    scorer: str
    interval: Interval
    errors: int
    model: str | None = None
    prompt_version: str | None = None

    @property
    def n(self) -> int:
        return self.interval.n

    @property
    def mean(self) -> float | None:
        return self.interval.mean

    def as_dict(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer,
            **self.interval.as_dict(),
            "errors": self.errors,
            "model": self.model,
            "prompt_version": self.prompt_version,
        }


class Report:
    """The result of an eval run: ``report.scorers[name].mean``,
    ``.table()`` for the terminal, ``.as_dict()`` / ``.to_json()``."""

    def __init__(self, run: EvalRun, rows: Sequence[EvalScore]) -> None:
        self.run = run
        self.rows = list(rows)
        self.scorers: dict[str, ScorerSummary] = {}
        for name in dict.fromkeys([*run.scorers, *(r.scorer for r in self.rows)]):
            mine = [r for r in self.rows if r.scorer == name]
            first = mine[0] if mine else None
            self.scorers[name] = ScorerSummary(
                name,
                mean_interval([r.score for r in mine if r.score is not None]),
                sum(1 for r in mine if r.score is None),
                first.judge_model if first else None,
                first.prompt_version if first else None,
            )

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def name(self) -> str:
        return self.run.name

    @classmethod
    def load(cls, app: App, name: str) -> Report:
        """The latest eval run named ``name`` (or with the id ``name``)."""
        run = app.get(EvalRun, name)
        if run is None:
            found = app.query(EvalRun, {"name": name}, order_by="-created_at", limit=1)
            if not found:
                known = sorted({r.name for r in app.query(EvalRun, limit=1000)})
                raise EvalNotFoundError("eval run", repr(name), known)
            run = found[0]
        return cls(run, app.query(EvalScore, {"eval_run_id": run.id}, order_by="example_id"))

    def scores(self, scorer: str) -> dict[str, float]:
        """``example_id -> score`` for one scorer (errors left out)."""
        return {r.example_id: r.score for r in self.rows if r.scorer == scorer and r.score is not None}

    def as_dict(self) -> dict[str, Any]:
        r = self.run
        return {
            "id": r.id,
            "name": r.name,
            "kind": r.kind,
            "dataset": r.dataset,
            "dataset_version": r.dataset_version,
            "target": r.target,
            "started_at": r.started_at.isoformat() if r.started_at else None,
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "scorers": {name: s.as_dict() for name, s in self.scorers.items()},
        }

    def to_json(self) -> str:
        return orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2).decode()

    def table(self) -> Table:
        r = self.run
        title = f"{r.name}: {r.target or '?'} on {r.dataset or '?'}" + (
            f" @ {r.dataset_version}" if r.dataset_version else ""
        )
        table = Table("scorer", "n", "mean", "95% CI", "errors", "judge", title=title)
        for s in self.scorers.values():
            ci = "-" if s.interval.low is None else f"[{_num(s.interval.low)}, {_num(s.interval.high)}]"
            judge = f"{s.model} ({s.prompt_version})" if s.model else ""
            table.add_row(s.scorer, str(s.n), _num(s.mean), ci, str(s.errors), judge)
        return table

    def __repr__(self) -> str:
        means = ", ".join(f"{k}={_num(v.mean)}" for k, v in self.scorers.items())
        return f"<Report {self.name} {means}>"


@dataclass(frozen=True)
class PairedDifference:
    """One scorer in a comparison: over the ``n`` examples both runs scored,
    the means of each and the mean of ``b - a`` with its interval."""

    scorer: str
    n: int
    mean_a: float | None
    mean_b: float | None
    diff: Interval
    p_value: float | None

    def as_dict(self) -> dict[str, Any]:
        d = self.diff
        return {
            "scorer": self.scorer,
            "n": self.n,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "diff": d.mean,
            "low": d.low,
            "high": d.high,
            "p_value": self.p_value,
        }


@dataclass(frozen=True)
class Comparison:
    """Two reports side by side (``b`` against ``a``)."""

    a: Report
    b: Report
    scorers: dict[str, PairedDifference]

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a.id, "b": self.b.id, "scorers": {k: v.as_dict() for k, v in self.scorers.items()}}

    def table(self) -> Table:
        table = Table("scorer", "n", "a", "b", "b - a", "95% CI", "p", title=f"{self.b.name} vs {self.a.name}")
        for s in self.scorers.values():
            ci = "-" if s.diff.low is None else f"[{_num(s.diff.low)}, {_num(s.diff.high)}]"
            table.add_row(s.scorer, str(s.n), _num(s.mean_a), _num(s.mean_b), _num(s.diff.mean), ci, _num(s.p_value))
        return table


def compare(a: Report, b: Report) -> Comparison:
    """Paired differences ``b - a`` per scorer both reports have, over the
    examples both scored: a paired t interval, much narrower than two
    separate intervals when the examples vary more than the targets."""
    out: dict[str, PairedDifference] = {}
    for name in a.scorers:
        if name not in b.scorers:
            continue
        sa, sb = a.scores(name), b.scores(name)
        shared = sorted(sa.keys() & sb.keys())
        xs = [sa[k] for k in shared]
        ys = [sb[k] for k in shared]
        diffs = [y - x for x, y in zip(xs, ys, strict=True)]
        out[name] = PairedDifference(
            name,
            len(shared),
            mean_interval(xs).mean,
            mean_interval(ys).mean,
            mean_interval(diffs),
            p_value(diffs),
        )
    return Comparison(a, b, out)
