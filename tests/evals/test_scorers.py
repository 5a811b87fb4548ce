"""The deterministic scorers: each says 1 or 0 (or a similarity), and
says it cannot score instead of guessing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tidal import evals, models
from tidal.evals.scorers import as_scorer


def test_exact_match_strips_text_and_needs_a_reference() -> None:
    assert evals.exact_match("q", " Paris\n", "Paris").score == 1.0
    assert evals.exact_match("q", "paris", "Paris").score == 0.0
    assert evals.exact_match("q", {"a": 1}, {"a": 1}).score == 1.0
    assert evals.exact_match("q", 4, "4").score == 1.0
    missing = evals.exact_match("q", "Paris", None)
    assert missing.score is None and "reference" in (missing.error or "")


def test_regex_searches_the_output() -> None:
    scorer = evals.regex(r"\b\d{4}-\d{2}-\d{2}\b")
    assert scorer.name == r"regex(\b\d{4}-\d{2}-\d{2}\b)"
    assert scorer("q", "due on 2024-05-01, ok", None).score == 1.0
    assert scorer("q", "due tomorrow", None).score == 0.0


def test_numeric_tolerance_absolute_and_relative() -> None:
    near = evals.numeric(0.5)
    assert near("q", "The answer is 41.6.", 42).score == 1.0
    assert near("q", "41.4", 42).score == 0.0
    assert near("q", 42, "42").score == 1.0
    assert evals.numeric(0.01, relative=True)("q", "1,005", 1000).score == 1.0
    assert evals.numeric(0.01, relative=True)("q", "1,011", 1000).score == 0.0
    nothing = near("q", "no idea", 42)
    assert nothing.score is None and "no number" in (nothing.error or "")
    assert near("q", "1", "many").error is not None
    with pytest.raises(ValueError, match="tolerance"):
        evals.numeric(-1)


class Table:
    """An embedder with fixed vectors."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


def test_embedding_similarity_is_the_cosine() -> None:
    emb = Table({"cat": [1, 0], "kitten": [1, 1], "car": [0, 1], "zero": [0, 0]})
    scorer = evals.embedding_similarity(emb)
    assert scorer("q", "cat", "cat").score == pytest.approx(1.0)
    assert scorer("q", "cat", "kitten").score == pytest.approx(2**-0.5)
    assert scorer("q", "cat", "car").score == pytest.approx(0.0)
    assert scorer("q", "cat", "zero").error is not None
    assert scorer("q", "cat", None).error is not None
    gate = evals.embedding_similarity(emb, threshold=0.7)
    assert gate("q", "cat", "kitten").score == 1.0 and gate("q", "cat", "car").score == 0.0


def test_embedding_similarity_with_an_embeddings_endpoint(standin: Any) -> None:
    model = models.connect(standin.base_url + "#text-embedding-3-small", timeout=5)
    try:
        scorer = evals.embedding_similarity(models.RemoteEmbedder(model))
        same = scorer("q", "the cat sat", "the cat sat").score
        other = scorer("q", "the cat sat", "quarterly revenue grew").score
    finally:
        model.close()
    assert same == pytest.approx(1.0, abs=1e-5)
    assert other is not None and other < same


def test_functions_are_scorers() -> None:
    def short(input: Any, output: Any, reference: Any) -> bool:
        return len(output) < 10

    wrapped = as_scorer(short)
    assert wrapped.name == "short"
    assert wrapped("q", "tiny", None).score == 1.0
    assert as_scorer(lambda i, o, r: None)("q", "x", None).error is not None
    with pytest.raises(TypeError):
        as_scorer(3)  # type: ignore[arg-type]
