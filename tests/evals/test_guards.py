"""Guardrails on serve ops: block, redact, retry with the violation shown to
the op, fallback; every violation a row of guard_violations; a guard that
raises reported as such; the built-ins against scripted stand-in judges."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

import tidal
from tidal import evals
from tidal.core.guards import Guard
from tidal.evals import guards


def violations(app: tidal.App) -> list[tuple[Any, ...]]:
    return app.sql("SELECT run_id, guard, stage, action, detail FROM guard_violations ORDER BY created_at").tuples()


def test_block_names_the_guard_and_logs_the_violation(app: tidal.App) -> None:
    comp = app.component("Bot")

    @comp.serve("ask", guard=[guards.max_length(10)])
    def ask(state: Any, props: Any) -> str:
        return str(props["text"])

    inst = comp("u")
    assert inst.run("ask", {"text": "short"}) == "short"
    with pytest.raises(tidal.GuardrailError, match=r"guard 'max_length' blocked the output of Bot.ask") as err:
        inst.run("ask", {"text": "far too long an answer"})
    assert err.value.guard == "max_length" and err.value.stage == "output"
    [(run_id, guard, stage, action, detail)] = violations(app)
    assert (guard, stage, action) == ("max_length", "output", "block") and "22 characters" in detail
    assert run_id == inst.last_run_id
    assert app.sql("SELECT status FROM runs WHERE id = :i", {"i": run_id}).tuples() == [("error",)]


def test_redact_input_and_output(app: tidal.App) -> None:
    comp = app.component("Echo")

    @comp.serve("in", guard=[guards.pii(on="input", action="redact")])
    def echo_in(state: Any, props: Any) -> str:
        return f"got {props['q']}"

    @comp.serve("out", guard=[guards.pii(on="output", action="redact")])
    def echo_out(state: Any, props: Any) -> dict[str, str]:
        return {"answer": f"write to {props['who']} or call +44 20 7946 0958"}

    inst = comp("u")
    assert inst.run("in", {"q": "mail bob@example.com, card 4111 1111 1111 1111"}) == "got mail [EMAIL], card [CARD]"
    out = inst.run("out", {"who": "ann@example.org"})
    assert out == {"answer": "write to [EMAIL] or call [PHONE]"}
    rows = violations(app)
    assert [(g, s, a) for _, g, s, a, _ in rows] == [("pii", "input", "redact"), ("pii", "output", "redact")]
    assert "email" in rows[0][4] and "card" in rows[0][4]
    # The runs log keeps the redacted props, not the personal data.
    assert "bob@example.com" not in str(app.sql("SELECT props FROM runs").tuples())


def test_retry_shows_the_violation_to_the_op_then_blocks(app: tidal.App) -> None:
    comp = app.component("Writer")
    seen: list[str | None] = []

    @comp.serve("ask", cache=None, guard=[guards.max_length(12, action="retry", retries=2)])
    def ask(state: Any, props: Any) -> str:
        seen.append(props.get("guard_violation"))
        return "brief" if props.get("guard_violation") and props["ok_on_retry"] else "a very long rambling answer"

    assert comp("u").run("ask", {"ok_on_retry": True}) == "brief"
    assert seen[0] is None and seen[1] is not None and "max_length" in seen[1] and "over the limit of 12" in seen[1]
    seen.clear()
    with pytest.raises(tidal.GuardrailError, match="max_length"):
        comp("u").run("ask", {"ok_on_retry": False})
    assert len(seen) == 3  # the first try and two retries
    actions = [a for _, _, _, a, _ in violations(app)]
    assert actions == ["retry", "retry", "retry", "block"]


def test_fallback_before_and_after(app: tidal.App) -> None:
    comp = app.component("Safe")
    called: list[str] = []

    @comp.serve("ask", guard=[guards.pii(on="input", action="fallback", fallback="Please leave out personal data.")])
    def ask(state: Any, props: Any) -> str:
        called.append(props["q"])
        return "fine"

    @comp.serve("len", guard=[guards.max_length(3, action="fallback", fallback="...")])
    def long(state: Any, props: Any) -> str:
        return "too long"

    inst = comp("u")
    assert inst.run("ask", {"q": "I am bob@example.com"}) == "Please leave out personal data."
    assert called == []  # the op never ran
    assert inst.run("len") == "..."
    assert [(s, a) for _, _, s, a, _ in violations(app)] == [("input", "fallback"), ("output", "fallback")]


def test_a_guard_that_raises_is_reported_clearly(app: tidal.App) -> None:
    comp = app.component("Broken")

    class Flaky(Guard):
        name = "flaky"

        def check_output(self, result: Any, props: dict[str, Any]) -> str | None:
            raise ZeroDivisionError("division by zero")

    @comp.serve("ask", guard=[Flaky()])
    def ask(state: Any, props: Any) -> str:
        return "x"

    with pytest.raises(tidal.GuardrailError, match="guard 'flaky' raised ZeroDivisionError: division by zero") as err:
        comp("u").run("ask")
    assert isinstance(err.value.__cause__, ZeroDivisionError)
    assert [(g, a) for _, g, _, a, _ in violations(app)] == [("flaky", "error")]


def test_async_ops_and_plain_functions_as_guards(app: tidal.App) -> None:
    comp = app.component("Async")

    def no_secret(result: Any) -> str | None:
        return "mentions the secret" if "secret" in result else None

    @comp.serve("ask", guard=[no_secret])
    async def ask(state: Any, props: Any) -> str:
        return str(props["say"])

    inst = comp("u")
    assert asyncio.run(inst.arun("ask", {"say": "hello"})) == "hello"
    with pytest.raises(tidal.GuardrailError, match="guard 'no_secret' blocked"):
        asyncio.run(inst.arun("ask", {"say": "the secret"}))


def test_definition_errors(app: tidal.App) -> None:
    comp = app.component("Def")
    with pytest.raises(tidal.DefinitionError, match="generator"):

        @comp.serve("g", guard=[guards.max_length(3)])
        def gen(state: Any, props: Any) -> Any:
            yield 1

    with pytest.raises(tidal.DefinitionError, match="guard= takes"):
        comp.serve("h", guard=[42])
    with pytest.raises(tidal.DefinitionError, match="action"):
        guards.max_length(3, action="explode")  # type: ignore[arg-type]


class Answer(BaseModel):
    answer: str
    confidence: float


def test_schema_grounded_and_pii_patterns(app: tidal.App) -> None:
    check = guards.schema(Answer)
    assert check.check_output({"answer": "x", "confidence": 0.5}, {}) is None
    assert "confidence" in (check.check_output('{"answer": "x"}', {}) or "")
    grounded = guards.grounded_in(lambda p: p["sources"])
    props = {"sources": ["The Eiffel Tower is in Paris and opened in 1889."]}
    assert grounded.check_output("The Eiffel Tower opened in 1889.", props) is None
    assert "not grounded" in (grounded.check_output("It opened in 1889. Bananas grow on the moon.", props) or "")
    cut = guards.max_length(3, action="redact", key="answer")
    assert cut.check_output({"answer": "abcdef", "model": "m" * 9}, {}) == "6 characters, over the limit of 3"
    assert cut.redact({"answer": "abcdef", "model": "m"}) == {"answer": "abc", "model": "m"}
    found = dict(guards.find_pii("bob@x.org; DE89 3704 0044 0532 0130 00; 4111 1111 1111 1111; 4111 1111 1111 1112"))
    assert found.keys() >= {"email", "iban", "card"}
    assert [m for k, m in guards.find_pii("4111 1111 1111 1112") if k == "card"] == []  # fails Luhn
    assert guards.find_pii("released 2024-05-01, version 1.2.3, 42 items") == []


def test_judge_guard_against_scripted_judges(standin: Any, llm: Any, app: tidal.App) -> None:
    standin.script(
        [
            {"match": r"\[Answer to grade\]\nrude", "json": {"score": 1, "reason": "rude"}},
            {"match": r"\[Answer to grade\]\npolite", "json": {"score": 5, "reason": "kind"}},
        ]
    )
    comp = app.component("Judged")
    polite = guards.judge(evals.Judge(llm, rubric="Polite? 1-5"), min_score=3, question=lambda p: p["q"])

    @comp.serve("ask", guard=[polite])
    def ask(state: Any, props: Any) -> str:
        return str(props["say"])

    assert comp("u").run("ask", {"q": "hi", "say": "polite reply"}) == "polite reply"
    with pytest.raises(tidal.GuardrailError, match=r"judged 1 < 3: rude"):
        comp("u").run("ask", {"q": "hi", "say": "rude reply"})
    assert [g for _, g, _, _, _ in violations(app)] == ["judge:judge"]
