"""Online evaluation: a deterministic sample of a flow's production runs is
scored in the background by a scheduled update op, never on the serve path."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import tidal
from tidal import evals
from tidal.evals.live import sampled

from .conftest import assistant

SCORE_SECONDS = 0.05


def wait_for(check: Any, timeout: float = 20.0, why: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out: {why()}"
        time.sleep(0.05)


def test_sampling_is_deterministic_by_run_id() -> None:
    ids = [f"run-{i}" for i in range(4000)]
    picked = [i for i in ids if sampled(i, 0.05)]
    assert picked == [i for i in ids if sampled(i, 0.05)]
    assert 0.04 < len(picked) / len(ids) < 0.06
    assert set(picked) <= {i for i in ids if sampled(i, 0.2)}  # a larger sample holds the smaller
    assert all(sampled(i, 1.0) for i in ids[:10])


def test_online_scores_a_sample_in_the_background(app: tidal.App) -> None:
    Assistant = assistant(app, {"q1": "Paris"})
    u = Assistant("prod")
    u.run("ask", props={"question": "before"})  # before the evaluator: never scored
    before = u.last_run_id

    scoring_threads: list[str] = []

    def length(input: Any, output: Any, reference: Any) -> float:
        scoring_threads.append(threading.current_thread().name)
        time.sleep(SCORE_SECONDS)  # a slow judge
        return float(len(output))

    live = evals.online(Assistant, "ask", sample=0.5, scorers=[length], every="1s")
    ids = []
    began = time.perf_counter()
    for i in range(60):
        u.run("ask", props={"question": f"q{i}"})
        ids.append(u.last_run_id)
    serving = time.perf_counter() - began
    expected = {i for i in ids if sampled(i, 0.5)}
    assert 15 < len(expected) < 45

    def scored() -> set[str | None]:
        return {r.target_run_id for r in app.query(evals.EvalScore, {"eval_run_id": live.eval_run_id})}

    wait_for(lambda: scored() == expected, why=lambda: f"scored {sorted(map(str, scored()))}, not {sorted(expected)}")
    time.sleep(1.5)  # another tick or two: nothing is scored twice
    rows = app.query(evals.EvalScore, {"eval_run_id": live.eval_run_id})
    assert len(rows) == len(expected) and before not in scored()
    assert {r.score for r in rows if r.target_run_id == ids[1]} <= {float(len("Paris")), float(len("I don't know"))}
    # Scored on the update threads, and the serve path never waited for it.
    assert scoring_threads and all(name.startswith("tidal-update") for name in scoring_threads)
    assert serving < len(expected) * SCORE_SECONDS / 2

    report = evals.Report.load(app, "online:Assistant.ask")
    assert report.run.kind == "online" and report.scorers["length"].n == len(expected)


def test_online_checks_its_arguments(app: tidal.App) -> None:
    Assistant = assistant(app, {})
    with pytest.raises(ValueError, match="sample"):
        evals.online(Assistant, "ask", sample=0, scorers=[evals.exact_match])
    with pytest.raises(ValueError, match="no serve op"):
        evals.online(Assistant, "nope", scorers=[evals.exact_match])
