"""Leaderboards from pairwise votes: Bradley-Terry recovers known
strengths, with intervals; judges' verdicts are votes too."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from click.testing import CliRunner

import tidal
from tidal import evals
from tidal.cli import main

STRENGTHS = {"gpt-big": 2.0, "mid": 1.0, "small": 0.0, "tiny": -1.0}


def synthetic_votes(app: tidal.App, board: str, n: int = 600, seed: int = 7) -> None:
    rng = random.Random(seed)
    names = list(STRENGTHS)
    for _ in range(n):
        a, b = rng.sample(names, 2)
        p_a = 1 / (1 + math.exp(STRENGTHS[b] - STRENGTHS[a]))
        roll = rng.random()
        winner = "tie" if abs(roll - p_a) < 0.05 else (a if roll < p_a else b)
        evals.vote(app, board, a, b, winner)


def test_leaderboard_orders_known_strengths(app: tidal.App) -> None:
    synthetic_votes(app, "arena")
    board = evals.leaderboard(app, "arena", resamples=200)
    assert board.names() == ["gpt-big", "mid", "small", "tiny"]
    assert board.votes == 600
    for s in board.standings:
        assert s.low <= s.score <= s.high
    top, second = board.standings[0], board.standings[1]
    assert top.low > second.high  # two units of log-strength apart: intervals separate
    assert sum(s.wins + s.losses + s.ties for s in board.standings) == 2 * 600
    assert board.as_dict()["standings"][0]["name"] == "gpt-big"
    # Repeatable: the bootstrap is seeded.
    assert evals.leaderboard(app, "arena", resamples=200).as_dict() == board.as_dict()


def test_votes_are_checked(app: tidal.App) -> None:
    with pytest.raises(ValueError, match="winner"):
        evals.vote(app, "b", "x", "y", "z")
    with pytest.raises(ValueError, match="two different"):
        evals.vote(app, "b", "x", "x", "x")
    assert evals.vote(app, "b", "x", "y", "y").winner == "b"
    with pytest.raises(evals.EvalNotFoundError, match="no leaderboard 'nope'"):
        evals.leaderboard(app, "nope")


def test_judge_votes_and_inconsistent_verdicts(app: tidal.App, standin: Any, llm: Any) -> None:
    standin.script(
        [
            {"match": r"\[Answer A\]\nGOOD", "json": {"winner": "A"}},
            {"match": r"\[Answer B\]\nGOOD", "json": {"winner": "B"}},
            {"match": r"\[Answer A\]\nBIASED", "json": {"winner": "A"}},
            {"match": r"\[Answer B\]\nBIASED", "json": {"winner": "A"}},
        ]
    )
    duel = evals.Pairwise(llm)
    for i in range(4):
        evals.judge_vote(app, "style", duel, f"q{i}", ("friendly", "GOOD"), ("terse", "meh"))
    verdict = evals.judge_vote(app, "style", duel, "q", ("friendly", "BIASED"), ("terse", "BIASED too"))
    assert verdict.winner == "inconsistent"
    votes = app.query(evals.EvalVote, {"board": "style"})
    assert sorted(v.winner for v in votes) == ["a", "a", "a", "a", "inconsistent"]
    assert {v.voter for v in votes} == {"stand-in"} and votes[0].prompt_version == duel.prompt_version
    board = evals.leaderboard(app, "style", resamples=50)
    assert board.names() == ["friendly", "terse"] and board.votes == 5
    assert board.standings[0].ties == 1
    assert evals.leaderboard(app, "style", inconsistent="drop", resamples=50).votes == 4


def test_cli_leaderboard(app: tidal.App, tmp_path: Any) -> None:
    synthetic_votes(app, "arena", n=200)
    store = f"sqlite:///{tmp_path}/store.db"
    args = ["evals", "leaderboard", "arena", "--app", "evals-test", "--store", store, "--resamples", "50"]
    out = CliRunner().invoke(main, [*args, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["standings"][0]["name"] == "gpt-big"
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 0 and "gpt-big" in text.output
    missing = CliRunner().invoke(main, ["evals", "leaderboard", "x", "--app", "evals-test", "--store", store])
    assert missing.exit_code == 3
