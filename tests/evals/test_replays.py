"""Replay: logged production inputs through another variant, judged new
against old by the order-swapped pairwise judge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tidal
from tidal import evals
from tidal.relations.builtin import Run

from .conftest import assistant

PREFERS_GOOD = [
    {"match": r"\[Answer A\]\nGOOD", "json": {"winner": "A", "reason": "A is better"}},
    {"match": r"\[Answer B\]\nGOOD", "json": {"winner": "B", "reason": "B is better"}},
    {"match": r"\[Answer A\]", "json": {"winner": "tie"}},
]


def log_traffic(app: tidal.App) -> tuple[tidal.Component, list[str]]:
    Assistant = assistant(app, {"Capital of France?": "Paris", "Capital of Italy?": "Rome"})
    u = Assistant("prod")
    ids = []
    for q in ("Capital of France?", "Capital of Italy?", "Capital of Peru?"):
        u.run("ask", props={"question": q})
        ids.append(u.last_run_id or "")
    return Assistant, ids


def test_replay_judges_a_variant_against_logged_outputs(app: tidal.App, standin: Any, llm: Any) -> None:
    standin.script(PREFERS_GOOD)
    Assistant, ids = log_traffic(app)
    seen: list[Any] = []

    def better(props: Any) -> str:
        seen.append(props)
        return f"GOOD answer to {props['question']}"

    report = evals.replay(
        app, Assistant, "ask", variant=better, variant_name="v2", judge=evals.Pairwise(llm),
        since=timedelta(hours=1), progress=False,
    )  # fmt: skip
    assert sorted(p["question"] for p in seen) == sorted(
        r.props["question"] for r in app.query(Run, {"component": "Assistant", "kind": "serve"})
    )
    pairwise = report.scorers["pairwise"]
    assert (pairwise.n, pairwise.mean, pairwise.errors) == (3, 1.0, 0)
    assert {r.example_id for r in report.rows} == set(ids)
    assert {r.label for r in report.rows} == {"a"}
    assert report.run.kind == "replay" and report.run.target == "v2 vs logged"
    votes = app.query(evals.EvalVote, {"board": "replay:Assistant.ask"})
    assert len(votes) == 3 and {(v.a, v.b, v.winner) for v in votes} == {("v2", "logged", "a")}
    assert evals.leaderboard(app, "replay:Assistant.ask", resamples=50).names() == ["v2", "logged"]


def test_replay_against_another_variant_and_since(app: tidal.App, standin: Any, llm: Any) -> None:
    standin.script(PREFERS_GOOD)
    Assistant, _ = log_traffic(app)
    report = evals.replay(
        app, Assistant, "ask", variant=lambda p: "meh", variant_name="terse",
        against=lambda p: "GOOD and friendly", judge=evals.Pairwise(llm), progress=False,
    )  # fmt: skip
    assert report.scorers["pairwise"].mean == 0.0 and report.run.target.startswith("terse vs ")
    future = evals.replay(
        app, Assistant, "ask", variant=lambda p: "x", variant_name="x", judge=evals.Pairwise(llm),
        since=datetime.now(UTC) + timedelta(hours=1), progress=False,
    )  # fmt: skip
    assert future.scorers["pairwise"].n == 0
    with pytest.raises(ValueError, match="against"):
        evals.replay(app, Assistant, "ask", variant=lambda p: "x", judge=evals.Pairwise(llm), against="old")


def test_replay_through_a_flow_keeps_the_new_run_ids(app: tidal.App, standin: Any, llm: Any) -> None:
    standin.script(PREFERS_GOOD)
    Assistant, ids = log_traffic(app)
    Better = assistant(app, {"Capital of Peru?": "GOOD: Lima"}, name="Better")
    report = evals.replay(
        app, Assistant, "ask", variant=Better.flow("ask", instance="canary"), judge=evals.Pairwise(llm),
        progress=False,
    )  # fmt: skip
    new_runs = {r.id for r in app.query(Run, {"component": "Better", "kind": "serve"})}
    assert {r.target_run_id for r in report.rows} == new_runs and len(new_runs) == 3
    peru = next(r for r in report.rows if r.output == "GOOD: Lima")
    assert peru.score == 1.0 and peru.example_id == ids[2]
