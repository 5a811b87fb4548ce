"""AI judges against scripted stand-in judges: verdicts become scores,
garbage becomes an error after the retries (never a score), and the
pairwise judge's order swap catches a judge that favours a position."""

from __future__ import annotations

from typing import Any

import pytest

from tidal import evals
from tidal.evals.judges import combine

RETRY = "does not fit the required JSON schema"


def test_judge_scores_with_a_reason_and_names_model_and_prompt(standin: Any, llm: Any) -> None:
    standin.script(
        [
            {"match": r"\[Answer to grade\]\nParis", "json": {"score": 5, "reason": "correct"}},
            {"match": r"\[Answer to grade\]\nLyon", "json": {"score": 1, "reason": "wrong city"}},
        ]
    )
    judge = evals.Judge(llm, rubric="Is the capital right? 1-5")
    good = judge("Capital of France?", "Paris", "Paris")
    bad = judge("Capital of France?", "Lyon", "Paris")
    assert (good.score, good.reason, good.error) == (5.0, "correct", None)
    assert (bad.score, bad.reason) == (1.0, "wrong city")
    assert judge.model == "stand-in"
    body = standin.requests()[-1]["body"]
    assert body["temperature"] == 0
    assert body["response_format"]["type"] == "json_schema"
    assert "Is the capital right? 1-5" in body["messages"][0]["content"]
    # The prompt version follows the rubric and the scale, not the call.
    assert judge.prompt_version == evals.Judge(llm, rubric="Is the capital right? 1-5").prompt_version
    assert judge.prompt_version != evals.Judge(llm, rubric="Is it polite? 1-5").prompt_version
    assert judge.prompt_version != evals.Judge(llm, rubric="Is the capital right? 1-5", scale=(0, 10)).prompt_version


def test_judge_garbage_is_retried_then_an_error_never_a_score(standin: Any, llm: Any) -> None:
    standin.script([{"match": f"GARBAGE|{RETRY}", "answer": "I think it is quite good!"}])
    judge = evals.Judge(llm, rubric="Good? 1-5", retries=2)
    result = judge("q", "GARBAGE", None)
    assert result.score is None
    assert result.error is not None and "StructuredOutputError" in result.error
    assert "quite good" in result.error  # the last raw reply is kept for the record
    assert len(standin.requests()) == 3  # asked, then retried twice


def test_judge_score_outside_the_scale_is_not_a_score(standin: Any, llm: Any) -> None:
    standin.script([{"match": f"LOUD|{RETRY}", "json": {"score": 9, "reason": "amazing"}}])
    result = evals.Judge(llm, rubric="Good? 1-5", retries=1)("q", "LOUD", None)
    assert result.score is None and result.error is not None
    assert len(standin.requests()) == 2


def test_judge_retry_that_fits_gives_the_score(standin: Any, llm: Any) -> None:
    standin.script(
        [
            {"match": RETRY, "json": {"score": 3, "reason": "fixed"}},
            {"match": "SHAKY", "answer": "three"},
        ]
    )
    result = evals.Judge(llm, rubric="Good? 1-5")("q", "SHAKY", None)
    assert (result.score, result.reason) == (3.0, "fixed")


CONSISTENT = [
    {"match": r"\[Answer A\]\nGOOD", "json": {"winner": "A", "reason": "A is right"}},
    {"match": r"\[Answer B\]\nGOOD", "json": {"winner": "B", "reason": "B is right"}},
]
BIASED = [{"match": r"\[Answer A\]", "json": {"winner": "A", "reason": "the first answer is best"}}]


def test_pairwise_asks_in_both_orders_and_maps_back(standin: Any, llm: Any) -> None:
    standin.script(CONSISTENT)
    duel = evals.Pairwise(llm, rubric="Which is right?")
    assert duel.compare("q", "GOOD answer", "poor answer").winner == "a"
    assert duel.compare("q", "poor answer", "GOOD answer").winner == "b"
    shown = [r["body"]["messages"][0]["content"] for r in standin.requests()[:2]]
    assert shown[0].index("GOOD") < shown[0].index("poor")  # a first
    assert shown[1].index("poor") < shown[1].index("GOOD")  # then b first


def test_pairwise_catches_a_position_biased_judge(standin: Any, llm: Any) -> None:
    standin.script(BIASED)
    verdict = evals.Pairwise(llm).compare("q", "GOOD answer", "poor answer")
    assert verdict.winner == "inconsistent"
    assert (verdict.first, verdict.second) == ("a", "b")
    assert verdict.score == 0.5
    assert "first answer is best" in (verdict.reason or "")


def test_pairwise_ties_and_half_preferences(standin: Any, llm: Any) -> None:
    standin.script([{"match": "Answer A", "json": {"winner": "tie"}}])
    assert evals.Pairwise(llm).compare("q", "x", "y").winner == "tie"
    assert combine("a", "tie") == "tie" and combine("tie", "b") == "tie"
    assert combine("a", "a") == "a" and combine("b", "a") == "inconsistent"


def test_pairwise_as_a_scorer_compares_output_with_reference(standin: Any, llm: Any) -> None:
    standin.script(CONSISTENT)
    duel = evals.Pairwise(llm)
    win = duel("q", "GOOD new", "old")
    loss = duel("q", "new", "GOOD old")
    assert (win.score, win.label) == (1.0, "a")
    assert (loss.score, loss.label) == (0.0, "b")
    assert duel("q", "new", None).error is not None


def test_pairwise_garbage_is_an_error(standin: Any, llm: Any) -> None:
    standin.script([{"match": f"Answer A|{RETRY}", "json": {"winner": "C"}}])
    verdict = evals.Pairwise(llm, retries=1).compare("q", "x", "y")
    assert verdict.winner is None and verdict.score is None
    assert verdict.error is not None and "StructuredOutputError" in verdict.error


def test_bad_scale_is_refused(llm: Any) -> None:
    with pytest.raises(ValueError, match="scale"):
        evals.Judge(llm, rubric="r", scale=(5, 1))
