"""Sampling settings: checked before anything is sent, so that a bad value
fails at once with the setting's name rather than as a 400 from the
endpoint after a round trip (or, worse, silently clamped by it).

Hand-written checks, not a pydantic model: they run on every call and cost
a few hundred nanoseconds this way (a model validation costs ~20 µs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ModelInputError

SAMPLING = (
    "temperature",
    "top_p",
    "top_k",
    "n",
    "seed",
    "max_tokens",
    "stop",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
)
"""The settings a call takes by name (``top_k`` is not OpenAI's: it goes in
the request body for servers that know it, such as vLLM and llama.cpp)."""

NOT_OPENAI = frozenset({"top_k"})

MAX_STOP = 4


def _number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelInputError(f"{name} must be a number, got {value!r}", setting=name)
    if value > high or value < low or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise ModelInputError(f"{name} must be in {bound}, got {value!r}", setting=name)


def _integer(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelInputError(f"{name} must be an integer, got {value!r}", setting=name)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ModelInputError(f"{name} must be {bound}, got {value!r}", setting=name)


def check(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` checked (ModelInputError names the first bad one), with
    None values dropped."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name == "temperature":
            _number(name, value, 0.0, 2.0)
        elif name == "top_p":
            _number(name, value, 0.0, 1.0, low_open=True)
        elif name in ("presence_penalty", "frequency_penalty"):
            _number(name, value, -2.0, 2.0)
        elif name == "top_k":
            _integer(name, value, 1)
        elif name == "n":
            _integer(name, value, 1, 128)
        elif name == "max_tokens":
            _integer(name, value, 1)
        elif name == "seed":
            _integer(name, value, -(2**63), 2**63 - 1)
        elif name == "top_logprobs":
            _integer(name, value, 0, 20)
        elif name == "logprobs":
            if not isinstance(value, bool):
                raise ModelInputError(f"logprobs must be true or false, got {value!r}", setting=name)
        elif name == "stop":
            stops = [value] if isinstance(value, str) else value
            if (
                not isinstance(stops, list | tuple)
                or not all(isinstance(s, str) and s for s in stops)
                or len(stops) > MAX_STOP
            ):
                raise ModelInputError(
                    f"stop must be a non-empty string or a list of at most {MAX_STOP}, got {value!r}", setting=name
                )
            value = list(stops)
        elif name == "logit_bias":
            if not isinstance(value, Mapping):
                raise ModelInputError(f"logit_bias must be a mapping of token id to bias, got {value!r}", setting=name)
        elif name == "user":
            if not isinstance(value, str):
                raise ModelInputError(f"user must be a string, got {value!r}", setting=name)
        else:
            raise ModelInputError(
                f"unknown sampling setting {name!r}; known: {', '.join(SAMPLING)} "
                "(pass anything else the endpoint takes in extra_body=)",
                setting=name,
            )
        out[name] = value
    if out.get("top_logprobs") and not out.get("logprobs"):
        raise ModelInputError("top_logprobs needs logprobs=True", setting="top_logprobs")
    return out


def deterministic(params: Mapping[str, Any]) -> bool:
    """Whether a call with these settings should give the same answer each
    time (temperature 0, or a seed): only such calls are cached exactly."""
    return params.get("temperature") == 0 or params.get("seed") is not None


def messages_of(prompt: Any) -> list[dict[str, Any]]:
    """Chat messages from a prompt: a string is one user message; a list of
    messages is checked for a role on each."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list | tuple) or not prompt:
        raise ModelInputError(
            f"messages must be a string or a non-empty list of messages, got {type(prompt).__name__}",
            setting="messages",
        )
    out = []
    for i, m in enumerate(prompt):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise ModelInputError(f"messages[{i}] must be a dict with a 'role', got {m!r}", setting="messages")
        out.append(dict(m))
    return out


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """A quick count of the prompt's tokens (about four characters each,
    plus a few per message): for the context-window check and the
    tokens-per-minute limit, where the exact count would need the model's
    own tokenizer."""
    chars = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, Mapping))
        chars += 16
    return chars // 4
