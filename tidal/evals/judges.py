"""AI judges: :class:`Judge` scores one output on a rubric, :class:`Pairwise`
says which of two outputs is better, asking twice with the order swapped.

Both ask for a structured verdict (``llm.structured``, temperature 0, so a
repeated question is answered from the models' cache); a reply that never
fits the verdict's schema after the retries is an error, never a score.
Each names its model (``model``) and a hash of its prompt template and
rubric (``prompt_version``), which every score row records.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from ..models.client import Model
from ..models.errors import ModelCallError, ModelStreamError, StructuredOutputError
from .scorers import Score, Scorer

JUDGE_TEMPLATE = """You grade an answer against a rubric.
Rubric: {rubric}
Reply with JSON only: {{"score": <a number from {low} to {high}>, "reason": "<one sentence>"}}.

[Question]
{input}
[End of question]
{reference_block}
[Answer to grade]
{output}
[End of answer]"""

REFERENCE_BLOCK = """
[Reference answer]
{reference}
[End of reference answer]
"""

PAIRWISE_TEMPLATE = """You compare two answers to the same question.
Criteria: {rubric}
Do not let the order of the answers or their length sway you.
Reply with JSON only: {{"winner": "A", "B" or "tie", "reason": "<one sentence>"}}.

[Question]
{input}
[End of question]

[Answer A]
{a}
[End of answer A]

[Answer B]
{b}
[End of answer B]"""

DEFAULT_PAIRWISE_RUBRIC = "Which answer is more correct, more helpful and better grounded?"

JUDGE_ERRORS = (StructuredOutputError, ModelCallError, ModelStreamError)
"""What a judge records as an error row instead of raising: replies that
never fit, calls that failed after the client's own retries."""


def render(value: Any) -> str:
    """A value as the judge sees it: text as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def prompt_version(*parts: Any) -> str:
    """A short hash of a prompt template and what fills it (rubric, scale)."""
    return hashlib.sha256(json.dumps([render(p) for p in parts]).encode()).hexdigest()[:12]


def _failure(exc: Exception) -> str:
    raw = getattr(exc, "raw", None)
    text = f"{type(exc).__name__}: {exc}"
    return f"{text} (last reply: {raw[:300]!r})" if raw is not None else text


class Judge(Scorer):
    """An AI judge: scores an output from ``scale[0]`` to ``scale[1]`` on
    ``rubric``, with a reason::

        judge = evals.Judge(llm, rubric="Correct and grounded in the sources? 1-5")
        judge(question, answer, reference)      # Score(4.0, reason="...")

    A verdict outside the scale does not fit the schema and is asked again
    (``retries`` times); after that the result is an error, not a score."""

    def __init__(
        self,
        llm: Model,
        rubric: str,
        *,
        scale: tuple[float, float] = (1, 5),
        name: str | None = None,
        retries: int = 2,
        template: str = JUDGE_TEMPLATE,
    ) -> None:
        low, high = scale
        if not low < high:
            raise ValueError(f"scale must be (low, high) with low < high, got {scale!r}")
        self.llm = llm
        self.rubric = rubric
        self.scale = scale
        self.retries = retries
        self.template = template
        self.name = name or "judge"
        self.model = llm.name
        self.prompt_version = prompt_version(template, rubric, list(scale))
        kind: type = int if isinstance(low, int) and isinstance(high, int) else float
        self.verdict: type[BaseModel] = create_model("Verdict", score=(kind, Field(ge=low, le=high)), reason=(str, ""))

    def messages(self, input: Any, output: Any, reference: Any = None) -> list[dict[str, Any]]:
        block = "" if reference is None else REFERENCE_BLOCK.format(reference=render(reference))
        low, high = self.scale
        content = self.template.format(
            rubric=self.rubric, low=low, high=high, input=render(input), output=render(output), reference_block=block
        )
        return [{"role": "user", "content": content}]

    def __call__(self, input: Any, output: Any, reference: Any = None) -> Score:
        try:
            verdict = self.llm.structured(
                self.messages(input, output, reference), self.verdict, retries=self.retries, temperature=0
            )
        except JUDGE_ERRORS as exc:
            return Score.failed(_failure(exc))
        return Score(float(verdict.score), reason=verdict.reason)


class _Choice(BaseModel):
    winner: Literal["A", "B", "tie"]
    reason: str = ""


Winner = Literal["a", "b", "tie", "inconsistent"]


@dataclass(frozen=True)
class PairVerdict:
    """A pairwise verdict between ``a`` and ``b``: ``winner`` is ``a``,
    ``b``, ``tie`` or ``inconsistent``; ``first`` and ``second`` are the two
    answers (in a/b terms, after mapping the swapped one back); ``error``
    is set, and ``winner`` None, when either ask failed."""

    winner: Winner | None
    first: str | None = None
    second: str | None = None
    reason: str | None = None
    error: str | None = None

    @property
    def score(self) -> float | None:
        """For ``a``: 1 a win, 0 a loss, 0.5 a tie or an inconsistent pair."""
        if self.winner is None:
            return None
        return {"a": 1.0, "b": 0.0}.get(self.winner, 0.5)


def combine(first: str, second: str) -> Winner:
    """The verdict of two asks (in a/b terms, the swapped one mapped back).
    Agreement wins; a win against a tie is a tie (the preference did not
    survive the swap); a win each way is ``inconsistent``: position bias."""
    if first == second:
        return first  # type: ignore[return-value]
    if "tie" in (first, second):
        return "tie"
    return "inconsistent"


class Pairwise(Scorer):
    """A pairwise AI judge: which of two answers is better, or a tie::

        duel = evals.Pairwise(llm, rubric="Which answer is more helpful?")
        duel.compare(question, answer_a, answer_b).winner   # "a", "b", "tie" or "inconsistent"

    It asks twice, ``a`` shown first then ``b`` shown first, and maps the
    second reply back, so a judge that prefers whatever comes first is
    caught (``inconsistent``) instead of counted. As a scorer in
    :func:`evals.run` it compares the output (a) with the reference (b):
    1 a win, 0 a loss, 0.5 a tie or an inconsistent pair."""

    def __init__(
        self,
        llm: Model,
        rubric: str = DEFAULT_PAIRWISE_RUBRIC,
        *,
        name: str | None = None,
        retries: int = 2,
        template: str = PAIRWISE_TEMPLATE,
    ) -> None:
        self.llm = llm
        self.rubric = rubric
        self.retries = retries
        self.template = template
        self.name = name or "pairwise"
        self.model = llm.name
        self.prompt_version = prompt_version(template, rubric)

    def _ask(self, input: Any, first: Any, second: Any) -> _Choice:
        content = self.template.format(rubric=self.rubric, input=render(input), a=render(first), b=render(second))
        choice: _Choice = self.llm.structured(
            [{"role": "user", "content": content}], _Choice, retries=self.retries, temperature=0
        )
        return choice

    def compare(self, input: Any, a: Any, b: Any) -> PairVerdict:
        """Judge ``a`` against ``b`` in both orders."""
        try:
            one = self._ask(input, a, b)
            two = self._ask(input, b, a)
        except JUDGE_ERRORS as exc:
            return PairVerdict(None, error=_failure(exc))
        first = {"A": "a", "B": "b"}.get(one.winner, "tie")
        second = {"A": "b", "B": "a"}.get(two.winner, "tie")  # b was shown as A
        reason = f"a first: {one.winner} ({one.reason}); b first: {two.winner} ({two.reason})"
        return PairVerdict(combine(first, second), first, second, reason)

    def __call__(self, input: Any, output: Any, reference: Any = None) -> Score:
        if reference is None:
            return Score.failed("pairwise needs a reference (the answer to compare with); this example has none")
        verdict = self.compare(input, output, reference)
        if verdict.error is not None:
            return Score.failed(verdict.error)
        return Score(verdict.score, label=verdict.winner, reason=verdict.reason)
