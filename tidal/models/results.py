"""What a model call returns: the answer and what it cost.

Built straight from the response's JSON (the client asks ``openai`` for the
raw response): a model's answer is read far more often than all of its
fields, and skipping the SDK's pydantic objects keeps the client's cost per
call under the wire's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call used."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens the provider served from its own prompt cache."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    @classmethod
    def of(cls, usage: Any) -> Usage:
        """From a response's ``usage`` object (absent: zeros)."""
        if not isinstance(usage, dict):
            return cls()
        details = usage.get("prompt_tokens_details") or {}
        return cls(
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
        )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the model asked to call."""

    id: str
    name: str
    arguments: str
    """JSON text, as the model wrote it (it may not parse)."""

    def args(self) -> Any:
        """The arguments parsed (ValueError when they are not JSON)."""
        return json.loads(self.arguments or "{}")

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True, slots=True)
class Choice:
    """One of the ``n`` answers of a call."""

    index: int
    text: str
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    token_logprobs: tuple[float, ...] | None = None
    """Each answer token's log probability (with ``logprobs=True``)."""
    top_logprobs: tuple[tuple[tuple[str, float], ...], ...] | None = None
    """Per token, the ``top_logprobs`` most likely tokens and their log probabilities."""

    @property
    def logprob(self) -> float | None:
        """The mean log probability of the answer's tokens (None without logprobs)."""
        lps = self.token_logprobs
        if not lps:
            return None
        return sum(lps) / len(lps)


def _choice(raw: dict[str, Any]) -> Choice:
    message = raw.get("message")
    if message is None:  # a completions (not chat) choice
        text = raw.get("text") or ""
        calls: tuple[ToolCall, ...] = ()
    else:
        text = message.get("content") or ""
        calls = tuple(
            ToolCall(c.get("id", ""), c["function"]["name"], c["function"].get("arguments") or "")
            for c in message.get("tool_calls") or ()
        )
    lps = raw.get("logprobs")
    token_lps = top = None
    if isinstance(lps, dict):
        content = lps.get("content")
        if isinstance(content, list):  # chat
            token_lps = tuple(float(t["logprob"]) for t in content)
            top = tuple(tuple((a["token"], float(a["logprob"])) for a in t.get("top_logprobs") or ()) for t in content)
        elif isinstance(lps.get("token_logprobs"), list):  # completions
            token_lps = tuple(float(x) for x in lps["token_logprobs"] if x is not None)
            tops = lps.get("top_logprobs") or []
            top = tuple(tuple((k, float(v)) for k, v in (t or {}).items()) for t in tops)
    return Choice(int(raw.get("index", 0)), text, raw.get("finish_reason"), calls, token_lps, top)


@dataclass(slots=True)
class ChatResult:
    """A model's answer: ``text`` (of the first choice), every choice, and
    the call's accounting (also a row of ``model_calls``: ``call_id``)."""

    model: str
    choices: list[Choice]
    usage: Usage
    cost: float = 0.0
    """US dollars (0 when the model has no price, and on a cache hit)."""
    latency: float = 0.0
    """Seconds, retries and waits for the rate limit included."""
    ttft: float | None = None
    """Seconds to the first token of a streamed call."""
    retries: int = 0
    cache_hit: str | None = None
    """``exact`` or ``semantic`` when served from Tidal's cache."""
    similarity: float | None = None
    call_id: str = ""
    run_id: str = ""
    """The run the call was made in ("" outside ops)."""
    steps: list[ChatResult] = field(default_factory=list)
    """For a tool-calling loop: each call of the loop, in order (this result
    holds the last answer, with usage and cost summed over them)."""
    note: dict[str, Any] | None = None
    """What a helper decided (best-of-n's scores and winner, votes)."""

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.choices]

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.choices[0].tool_calls if self.choices else ()

    @property
    def logprob(self) -> float | None:
        """Mean token log probability of the first choice (with ``logprobs=True``)."""
        return self.choices[0].logprob if self.choices else None

    def json(self) -> Any:
        """The first choice's text parsed as JSON."""
        return json.loads(self.text)

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, body: dict[str, Any], model: str) -> ChatResult:
        """From a ``chat.completion`` (or ``text_completion``) response body."""
        choices = sorted((_choice(c) for c in body.get("choices") or ()), key=lambda c: c.index)
        return cls(model=str(body.get("model") or model), choices=choices, usage=Usage.of(body.get("usage")))
