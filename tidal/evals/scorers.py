"""Scorers: what turns one output into one score.

A scorer is called as ``scorer(input, output, reference)`` and returns a
:class:`Score`; one that cannot score returns a Score with ``error`` set and
no ``score`` (it never guesses). Plain functions are scorers too: see
:func:`as_scorer`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.embedders import Embedder

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Score:
    """What a scorer says about one output."""

    score: float | None
    label: str | None = None
    reason: str | None = None
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> Score:
        return cls(None, error=error)


class Scorer:
    """The base of scorers. ``name`` names it in score rows and reports;
    ``model`` and ``prompt_version`` are set by AI judges."""

    name: str = "scorer"
    model: str | None = None
    prompt_version: str | None = None

    def __call__(self, input: Any, output: Any, reference: Any = None) -> Score:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<scorer {self.name}>"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class ExactMatch(Scorer):
    """1.0 when the output equals the reference, else 0.0. Text is compared
    stripped (and case-folded with ``ignore_case``); other values with ``==``."""

    def __init__(self, *, ignore_case: bool = False) -> None:
        self.ignore_case = ignore_case
        self.name = "exact_match_ci" if ignore_case else "exact_match"

    def __call__(self, input: Any, output: Any, reference: Any = None) -> Score:
        if reference is None:
            return Score.failed("exact_match needs a reference; this example has none")
        if isinstance(output, str) or isinstance(reference, str):
            out, ref = _text(output).strip(), _text(reference).strip()
            if self.ignore_case:
                out, ref = out.casefold(), ref.casefold()
            return Score(float(out == ref))
        return Score(float(output == reference))


class Regex(Scorer):
    """1.0 when ``pattern`` is found in the output (``re.search``), else 0.0."""

    def __init__(self, pattern: str, *, flags: int = 0) -> None:
        self.pattern = re.compile(pattern, flags)
        self.name = f"regex({pattern})"

    def __call__(self, input: Any, output: Any, reference: Any = None) -> Score:
        return Score(float(self.pattern.search(_text(output)) is not None))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    found = _NUMBER.search(_text(value).replace(",", ""))
    return float(found.group()) if found else None


class Numeric(Scorer):
    """1.0 when the output's number is within ``tolerance`` of the reference
    (relative to the reference with ``relative=True``), else 0.0. Text
    outputs give their first number; an output with none is an error."""

    def __init__(self, tolerance: float = 0.0, *, relative: bool = False) -> None:
        if not tolerance >= 0:
            raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
        self.tolerance = tolerance
        self.relative = relative
        self.name = f"numeric({tolerance}{', relative' if relative else ''})"

    def __call__(self, input: Any, output: Any, reference: Any = None) -> Score:
        ref = _number(reference)
        if ref is None:
            return Score.failed(f"numeric needs a numeric reference, got {reference!r}")
        out = _number(output)
        if out is None or not math.isfinite(out):
            return Score.failed(f"no number in the output {_text(output)[:200]!r}")
        bound = self.tolerance * abs(ref) if self.relative else self.tolerance
        return Score(float(abs(out - ref) <= bound), reason=f"{out} vs {ref}")


class EmbeddingSimilarity(Scorer):
    """The cosine similarity of the output's and the reference's embeddings
    (with ``threshold``: 1.0 at or above it, else 0.0; the similarity is the
    reason)."""

    def __init__(self, embedder: Embedder, *, threshold: float | None = None) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.name = "embedding_similarity" if threshold is None else f"embedding_similarity(>={threshold})"

    def __call__(self, input: Any, output: Any, reference: Any = None) -> Score:
        if reference is None:
            return Score.failed("embedding_similarity needs a reference; this example has none")
        vectors = np.asarray(self.embedder.embed([_text(output), _text(reference)]), dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1)
        if not np.all(norms > 0):
            return Score.failed("an embedding is all zeros")
        cosine = float(vectors[0] @ vectors[1] / (norms[0] * norms[1]))
        if self.threshold is None:
            return Score(cosine)
        return Score(float(cosine >= self.threshold), reason=f"similarity {cosine:.4f}")


class FunctionScorer(Scorer):
    """A plain function as a scorer: ``fn(input, output, reference)``
    returning a number, a bool, None (no score) or a :class:`Score`."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", "scorer"))

    def __call__(self, input: Any, output: Any, reference: Any = None) -> Score:
        value = self.fn(input, output, reference)
        if isinstance(value, Score):
            return value
        if value is None:
            return Score.failed(f"{self.name} gave no score")
        return Score(float(value))


def as_scorer(value: Scorer | Callable[..., Any]) -> Scorer:
    """``value`` if it is a Scorer, else the function wrapped in one."""
    if isinstance(value, Scorer):
        return value
    if callable(value):
        return FunctionScorer(value)
    raise TypeError(f"a scorer must be a Scorer or a function (input, output, reference), got {value!r}")


exact_match = ExactMatch()
"""1.0 when the output equals the reference (text stripped), else 0.0."""


def regex(pattern: str, *, flags: int = 0) -> Regex:
    """A scorer: 1.0 when ``pattern`` is found in the output."""
    return Regex(pattern, flags=flags)


def numeric(tolerance: float = 0.0, *, relative: bool = False) -> Numeric:
    """A scorer: 1.0 when the output's number is within ``tolerance`` of the reference."""
    return Numeric(tolerance, relative=relative)


def embedding_similarity(embedder: Embedder, *, threshold: float | None = None) -> EmbeddingSimilarity:
    """A scorer: cosine similarity of output and reference embeddings."""
    return EmbeddingSimilarity(embedder, threshold=threshold)
