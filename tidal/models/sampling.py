"""Choosing among several answers (Huyen, "Sampling for text generation"):
best-of-n by mean token log probability or by a scorer, and
self-consistency (a majority vote over sampled answers).

Each helper records what it decided as a ``model_calls`` row of its own
(operation ``decision``, no tokens, ``parent_call`` = the sampling call):
every candidate's score or answer, and which won and why.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import accounting, params
from .errors import ModelInputError
from .results import ChatResult, Choice

if TYPE_CHECKING:
    from .client import Model


def _candidates(model: Model, messages: list[dict[str, Any]], settings: dict[str, Any], n: int) -> ChatResult:
    """``n`` answers in one call; when the endpoint gives fewer (some local
    servers ignore ``n``), the rest one by one (seeds moved on, if set)."""
    params._integer("n", n, 1, 128)
    result = model.chat_once(messages, {**settings, "n": n})
    seed = settings.get("seed")
    extra = 0
    while len(result.choices) < n:
        extra += 1
        more = model.chat_once(messages, {**settings, "n": 1, **({"seed": seed + extra} if seed is not None else {})})
        if not more.choices:
            break
        result.choices.append(Choice(len(result.choices), *_rest(more.choices[0])))
        result.usage, result.cost = result.usage + more.usage, result.cost + more.cost
    return result


def _rest(c: Choice) -> tuple[Any, ...]:
    return (c.text, c.finish_reason, c.tool_calls, c.token_logprobs, c.top_logprobs)


def _decided(model: Model, result: ChatResult, note: dict[str, Any], t0: float, wall: float) -> None:
    run, app = accounting.where(model.app)
    result.note = note
    accounting.record(
        app, run, call_id=accounting.new_call_id(), model=model.name, endpoint=model.endpoint.base_url,
        operation="decision", started=wall, latency=time.perf_counter() - t0, parent_call=result.call_id, note=note,
    )  # fmt: skip


def best_of(model: Model, messages: list[dict[str, Any]], settings: dict[str, Any], n: int, by: Any) -> ChatResult:
    """See :meth:`Model.best_of`."""
    t0, wall = time.perf_counter(), time.time()
    if by == "logprob":
        result = _candidates(model, messages, {**settings, "logprobs": True}, n)
        scores = [c.logprob for c in result.choices]
        if any(s is None for s in scores):
            raise ModelInputError(
                f"{model.name} gave no logprobs, so best_of cannot rank by them: pass by=a scorer", setting="by"
            )
        how = "mean token logprob"
    elif callable(by):
        result = _candidates(model, messages, settings, n)
        scorer: Callable[[str], Any] = by
        scores = [float(scorer(c.text)) for c in result.choices]
        how = getattr(by, "__name__", None) or type(by).__name__
    else:
        raise ModelInputError(f"by must be 'logprob' or a scorer callable(text) -> float, got {by!r}", setting="by")
    ranked = sorted(range(len(result.choices)), key=lambda i: (-(scores[i] or 0.0), i))
    winner = ranked[0]
    result.choices = [result.choices[i] for i in ranked]
    note = {
        "helper": "best_of",
        "by": how,
        "winner": winner,
        "candidates": [{"index": i, "score": scores[i]} for i in range(len(scores))],
    }
    _decided(model, result, note, t0, wall)
    return result


def self_consistency(
    model: Model,
    messages: list[dict[str, Any]],
    settings: dict[str, Any],
    n: int,
    answer: Callable[[str], Any] | None,
) -> ChatResult:
    """See :meth:`Model.self_consistency`."""
    t0, wall = time.perf_counter(), time.time()
    extract = answer or (lambda text: text.strip())
    if not callable(extract):
        raise ModelInputError(f"answer must be a callable(text) -> answer, got {answer!r}", setting="answer")
    result = _candidates(model, messages, settings, n)
    answers = [extract(c.text) for c in result.choices]
    keys = [repr(a) for a in answers]
    votes = Counter(keys)
    # Most votes wins; a tie goes to the answer seen first.
    top = max(votes.values())
    winner_key = next(k for k in keys if votes[k] == top)
    first = keys.index(winner_key)
    result.choices = [result.choices[first]] + [c for i, c in enumerate(result.choices) if i != first]
    note = {
        "helper": "self_consistency",
        "answer": answers[first],
        "votes": {k: v for k, v in votes.most_common()},
        "agreement": top / len(keys),
        "answers": answers,
    }
    _decided(model, result, note, t0, wall)
    return result
