"""Leaderboards: pairwise votes (users' and judges') in ``eval_votes``,
ranked by Bradley-Terry scores with bootstrap intervals (evalica)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import evalica
from rich.table import Table

from ..app import App
from .judges import PairVerdict, Pairwise
from .records import EvalVote
from .report import EvalNotFoundError

WINNERS = ("a", "b", "tie", "inconsistent")
RESAMPLES = 1000
"""Bootstrap resamples of the votes behind each interval."""


def vote(
    app: App,
    board: str,
    a: str,
    b: str,
    winner: str,
    *,
    voter: str = "user",
    reason: str | None = None,
    example_id: str | None = None,
    prompt_version: str | None = None,
) -> EvalVote:
    """Record that ``winner`` (``a``'s name, ``b``'s name, ``"a"``, ``"b"``
    or ``"tie"``) won a comparison of ``a`` and ``b`` on ``board``."""
    if a == b:
        raise ValueError(f"a vote compares two different contestants, got {a!r} twice")
    side = {a: "a", b: "b"}.get(winner, winner)
    if side not in WINNERS:
        raise ValueError(f"winner must be {a!r}, {b!r}, 'a', 'b', 'tie' or 'inconsistent'; got {winner!r}")
    row = EvalVote(
        board=board,
        a=a,
        b=b,
        winner=side,
        voter=voter,
        reason=reason,
        example_id=example_id,
        prompt_version=prompt_version,
    )
    return app.insert(row)


def judge_vote(
    app: App, board: str, judge: Pairwise, input: Any, a: tuple[str, Any], b: tuple[str, Any], **extra: Any
) -> PairVerdict:
    """Have ``judge`` compare the outputs of contestants ``a`` and ``b``
    (``(name, output)``) and record its verdict on ``board`` (none when it
    failed)."""
    verdict = judge.compare(input, a[1], b[1])
    if verdict.winner is not None:
        vote(
            app,
            board,
            a[0],
            b[0],
            verdict.winner,
            voter=judge.model or judge.name,
            reason=verdict.reason,
            prompt_version=judge.prompt_version,
            **extra,
        )
    return verdict


@dataclass(frozen=True)
class Standing:
    """A contestant's Bradley-Terry score (strengths summing to 1) with its
    bootstrap interval, and its record."""

    name: str
    score: float
    low: float
    high: float
    wins: int
    losses: int
    ties: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Leaderboard:
    """Contestants, best first."""

    board: str
    votes: int
    standings: tuple[Standing, ...]

    def names(self) -> list[str]:
        return [s.name for s in self.standings]

    def as_dict(self) -> dict[str, Any]:
        return {"board": self.board, "votes": self.votes, "standings": [s.as_dict() for s in self.standings]}

    def table(self) -> Table:
        table = Table("#", "contestant", "score", "95% CI", "W", "L", "T", title=f"{self.board} ({self.votes} votes)")
        for rank, s in enumerate(self.standings, 1):
            table.add_row(
                str(rank),
                s.name,
                f"{s.score:.3f}",
                f"[{s.low:.3f}, {s.high:.3f}]",
                str(s.wins),
                str(s.losses),
                str(s.ties),
            )
        return table


def leaderboard(
    app: App, board: str, *, inconsistent: str = "tie", resamples: int = RESAMPLES, seed: int = 0
) -> Leaderboard:
    """The standings of ``board`` from its votes: Bradley-Terry scores
    (a tie counts half a win each way) with percentile bootstrap intervals
    over the votes (``seed`` makes them repeatable). A judge's
    ``inconsistent`` verdict counts as a tie (``inconsistent="drop"``:
    left out), the convention of MT-Bench's position-swapped judging."""
    if inconsistent not in ("tie", "drop"):
        raise ValueError(f"inconsistent must be 'tie' or 'drop', got {inconsistent!r}")
    rows = app.query(EvalVote, {"board": board})
    if not rows:
        boards = sorted({v.board for v in app.query(EvalVote, limit=10_000)})
        raise EvalNotFoundError("leaderboard", repr(board), boards, where="eval_votes (evals.vote() records votes)")
    kept = [r for r in rows if not (r.winner == "inconsistent" and inconsistent == "drop")]
    code = {"a": evalica.Winner.X, "b": evalica.Winner.Y}
    xs = [r.a for r in kept]
    ys = [r.b for r in kept]
    winners = [code.get(r.winner, evalica.Winner.Draw) for r in kept]
    result = evalica.bradley_terry(xs, ys, winners)
    boot = evalica.bootstrap(
        evalica.bradley_terry,  # type: ignore[arg-type]  # its hints miss that it is a RankingMethod
        xs,
        ys,
        winners,
        n_resamples=resamples,
        random_state=seed,
        bootstrap_method="percentile",
    )
    record: dict[str, list[int]] = {}
    for r in kept:
        for me, side in ((r.a, "a"), (r.b, "b")):
            tally = record.setdefault(me, [0, 0, 0])
            tally[0 if r.winner == side else 2 if r.winner not in ("a", "b") else 1] += 1
    standings = [
        Standing(str(name), float(score), float(boot.low[name]), float(boot.high[name]), *record[str(name)])
        for name, score in result.scores.items()
    ]
    standings.sort(key=lambda s: -s.score)
    return Leaderboard(board, len(kept), tuple(standings))
