"""Built-in guardrails for serve ops (``guard=[...]``; the protocol is
:class:`tidal.core.guards.Guard`)::

    from tidal.evals import guards

    @Assistant.serve("ask", guard=[
        guards.pii(action="redact"),                        # emails, phones, cards, IBANs
        guards.max_length(1200, action="retry"),            # asked again, told why
        guards.grounded_in(lambda props: props["sources"], action="fallback", fallback="I don't know."),
        guards.judge(evals.Judge(llm, rubric="Polite and on topic? 1-5"), min_score=3),
        guards.schema(Answer),
    ])
    def ask(state, props): ...

Each takes ``action`` (``block``, ``redact``, ``retry``, ``fallback``),
``fallback=`` (the result for ``fallback``) and ``retries=``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from ..core.guards import Action, Guard
from .scorers import Scorer

# -- PII ----------------------------------------------------------------------

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){2,4}(?![\w])")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
DATE = re.compile(r"\d{4}[-./]\d{2}[-./]\d{2}|\d{2}[-./]\d{2}[-./]\d{4}")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,3})?\b")


def luhn(digits: str) -> bool:
    """Whether a card number passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_pii(text: str) -> list[tuple[str, str]]:
    """(kind, match) of each email, card number (Luhn-checked), IBAN and
    phone number in ``text``."""
    found: list[tuple[str, str]] = [("email", m) for m in EMAIL.findall(text)]
    cards = [m.group() for m in CARD.finditer(text) if luhn(re.sub(r"\D", "", m.group()))]
    found += [("card", m) for m in cards]
    found += [("iban", m.group()) for m in IBAN.finditer(text)]
    for m in PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if DATE.fullmatch(m.group()):
            continue
        if 7 <= len(digits) <= 15 and not any(m.group() in c or c in m.group() for c in cards):
            found.append(("phone", m.group()))
    return found


def _walk(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _walk(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_walk(v, fn) for v in value)
    return value


def _texts(value: Any) -> list[str]:
    out: list[str] = []
    _walk(value, lambda s: out.append(s) or s)  # type: ignore[func-returns-value]
    return out


class PII(Guard):
    """Personal data in the props (``on="input"``), the result (``"output"``)
    or both: emails, phone numbers, card numbers (Luhn-checked) and IBANs.
    ``redact`` replaces each with ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[IBAN]``."""

    name = "pii"

    def __init__(self, on: str = "both", action: Action = "block", **kwargs: Any) -> None:
        super().__init__(action, **kwargs)
        if on not in ("input", "output", "both"):
            raise ValueError(f"pii(on=...) takes 'input', 'output' or 'both', got {on!r}")
        self.on = on

    def _find(self, value: Any) -> str | None:
        kinds = sorted({kind for text in _texts(value) for kind, _ in find_pii(text)})
        return f"personal data: {', '.join(kinds)}" if kinds else None

    def check_input(self, props: dict[str, Any]) -> str | None:
        return self._find(props) if self.on in ("input", "both") else None

    def check_output(self, result: Any, props: dict[str, Any]) -> str | None:
        return self._find(result) if self.on in ("output", "both") else None

    def redact(self, value: Any) -> Any:
        def scrub(text: str) -> str:
            for kind, match in sorted(find_pii(text), key=lambda f: -len(f[1])):
                text = text.replace(match, f"[{kind.upper()}]")
            return text

        return _walk(value, scrub)


def pii(on: str = "both", action: Action = "block", **kwargs: Any) -> PII:
    """A guard against personal data (see :class:`PII`)."""
    return PII(on, action, **kwargs)


# -- length and schema -----------------------------------------------------------


class MaxLength(Guard):
    """A result (its text; ``result[key]`` with ``key``) longer than ``n``
    characters; ``redact`` cuts it to ``n``."""

    name = "max_length"

    def __init__(self, n: int, action: Action = "block", *, key: str | None = None, **kwargs: Any) -> None:
        super().__init__(action, **kwargs)
        self.n = n
        self.key = key

    def _text(self, result: Any) -> Any:
        return result.get(self.key, "") if self.key is not None and isinstance(result, dict) else result

    def check_output(self, result: Any, props: dict[str, Any]) -> str | None:
        text = self._text(result)
        size = len(text if isinstance(text, str) else str(text))
        return f"{size} characters, over the limit of {self.n}" if size > self.n else None

    def redact(self, value: Any) -> Any:
        text = self._text(value)
        if not isinstance(text, str):
            return value
        if self.key is not None and isinstance(value, dict):
            return {**value, self.key: text[: self.n]}
        return text[: self.n]


def max_length(n: int, action: Action = "block", *, key: str | None = None, **kwargs: Any) -> MaxLength:
    """A guard on the length of the result (see :class:`MaxLength`)."""
    return MaxLength(n, action, key=key, **kwargs)


class Schema(Guard):
    """A result that does not validate as ``model`` (a pydantic model; a
    dict, a JSON string or an instance)."""

    name = "schema"

    def __init__(self, model: type[BaseModel], action: Action = "block", **kwargs: Any) -> None:
        super().__init__(action, **kwargs)
        self.model = model

    def check_output(self, result: Any, props: dict[str, Any]) -> str | None:
        try:
            if isinstance(result, str | bytes):
                self.model.model_validate_json(result)
            elif not isinstance(result, self.model):
                self.model.model_validate(result)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(result)"
            return f"not a {self.model.__name__}: {where}: {first['msg']}"
        return None


def schema(model: type[BaseModel], action: Action = "block", **kwargs: Any) -> Schema:
    """A guard that the result fits ``model`` (see :class:`Schema`)."""
    return Schema(model, action, **kwargs)


# -- groundedness and judges -------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in is it its of on or that the this to was were will with "  # noqa: SIM905
    "you your i we they he she not no do does can".split()
)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1}


class GroundedIn(Guard):
    """An answer with sentences not grounded in the sources: a sentence is
    grounded when at least ``overlap`` of its content words appear in the
    sources (``sources(props)``: a list of texts, or of objects with
    ``.text``). Lexical, so cheap; a judge is the thorough check."""

    name = "grounded_in"

    def __init__(
        self,
        sources: Callable[[dict[str, Any]], Any],
        overlap: float = 0.5,
        action: Action = "block",
        **kwargs: Any,
    ) -> None:
        super().__init__(action, **kwargs)
        self.sources = sources
        self.overlap = overlap

    def check_output(self, result: Any, props: dict[str, Any]) -> str | None:
        got = self.sources(props) or []
        if isinstance(got, str):
            got = [got]
        known: set[str] = set()
        for item in got:
            known |= _words(item if isinstance(item, str) else str(getattr(item, "text", item)))
        text = result if isinstance(result, str) else " ".join(_texts(result))
        loose = []
        for sentence in _SENTENCE.split(text.strip()):
            words = _words(sentence)
            if words and len(words & known) / len(words) < self.overlap:
                loose.append(sentence)
        if not loose:
            return None
        return f"{len(loose)} sentence(s) not grounded in the sources, e.g. {loose[0][:120]!r}"


def grounded_in(
    sources: Callable[[dict[str, Any]], Any], overlap: float = 0.5, action: Action = "block", **kwargs: Any
) -> GroundedIn:
    """A guard that the answer sticks to the sources (see :class:`GroundedIn`)."""
    return GroundedIn(sources, overlap, action, **kwargs)


class JudgeGuard(Guard):
    """A result an AI judge (any scorer: ``scorer(input, output)``) scores
    under ``min_score``, or cannot score. ``input`` is taken from the props
    by ``question`` (default: the props themselves)."""

    name = "judge"

    def __init__(
        self,
        scorer: Scorer,
        min_score: float,
        action: Action = "block",
        *,
        question: Callable[[dict[str, Any]], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", f"judge:{scorer.name}")
        super().__init__(action, **kwargs)
        self.scorer = scorer
        self.min_score = min_score
        self.question = question

    def check_output(self, result: Any, props: dict[str, Any]) -> str | None:
        asked = self.question(props) if self.question is not None else dict(props)
        verdict = self.scorer(asked, result)
        if verdict.score is None:
            return f"the judge could not score the result: {verdict.error}"
        if verdict.score < self.min_score:
            return f"judged {verdict.score:g} < {self.min_score:g}: {verdict.reason or 'no reason given'}"
        return None


def judge(
    scorer: Scorer,
    min_score: float,
    action: Action = "block",
    *,
    question: Callable[[dict[str, Any]], Any] | None = None,
    **kwargs: Any,
) -> JudgeGuard:
    """A guard by an AI judge (see :class:`JudgeGuard`)."""
    return JudgeGuard(scorer, min_score, action, question=question, **kwargs)


__all__ = [
    "PII",
    "GroundedIn",
    "Guard",
    "JudgeGuard",
    "MaxLength",
    "Schema",
    "find_pii",
    "grounded_in",
    "judge",
    "luhn",
    "max_length",
    "pii",
    "schema",
]
