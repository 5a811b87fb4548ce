"""Learned ranking: a linear scorer over a candidate's features, trained
online from feedback on searches.

A search fuses the lexical and vector lists by reciprocal rank, then
re-scores its best ``RERANK`` candidates with ``weights · features``. The
weights start as ``[1, 0, 0, ...]`` (the fused score alone: the order is
plain RRF until feedback arrives) and learn pairwise: feedback that a
document was relevant to a search says it should have scored above the
other hits of that search; irrelevant, that it should have scored below
them. Each pair is one step of logistic regression on the difference of
the two feature vectors (RankNet's loss, ``log(1 + exp(-w · (x+ - x-)))``).

Why not river's ``LogisticRegression`` (or scikit-learn's): those are
pointwise classifiers (a bias, calibrated probabilities) while ranking
needs only the order, and their state is a Python object; six floats in a
list are what the index keeps as versioned state, readable in the state's
history and rolled back like any key. Neither library is a dependency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FEATURES = ("fused", "lexical", "lexical_rr", "vector", "vector_rr", "doc_prior")
"""A candidate's features, in the order of the weights: the RRF score
(times RRF_K, about 0-2), the BM25 score over the best one of the search,
1 / its lexical rank, the cosine, 1 / its vector rank (0 where the chunk was
not a candidate of that side), and its document's feedback prior
``(relevant - irrelevant) / (relevant + irrelevant + 1)``."""

INITIAL_WEIGHTS = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
RERANK = 50
"""Fused candidates the learned weights re-score."""
LEARNING_RATE = 0.5
L2 = 1e-3

RELEVANT_LABELS = frozenset({"relevant", "click", "clicked", "good"})
IRRELEVANT_LABELS = frozenset({"irrelevant", "not_relevant", "bad"})


@dataclass(frozen=True)
class Judgement:
    """What one feedback row says: ``doc_id`` was (not) relevant."""

    doc_id: str
    relevant: bool


def judgement(label: str | None, score: float | None, comment: str | None, hits: Sequence[Mapping[str, Any]]) -> (
    Judgement | None
):  # fmt: skip
    """Read a feedback row on a search: ``label`` ``relevant`` (or
    ``click``) / ``irrelevant``, else the sign of ``score``; ``comment`` the
    document id (the top hit's when empty). None: not a judgement."""
    if label is not None and label.lower() in RELEVANT_LABELS:
        relevant = True
    elif label is not None and label.lower() in IRRELEVANT_LABELS:
        relevant = False
    elif label is None and score is not None and score != 0:
        relevant = score > 0
    else:
        return None
    doc_id = (comment or "").strip() or (str(hits[0]["doc_id"]) if hits else "")
    return Judgement(doc_id, relevant) if doc_id else None


def prior(counts: Sequence[int] | None) -> float:
    if not counts:
        return 0.0
    good, bad = int(counts[0]), int(counts[1])
    return (good - bad) / (good + bad + 1)


def features(
    fused: np.ndarray,
    lexical: Sequence[float | None],
    lexical_rank: Sequence[int | None],
    vector: Sequence[float | None],
    vector_rank: Sequence[int | None],
    priors: Sequence[float],
    rrf_k: int,
) -> np.ndarray:
    """The feature matrix of a list of candidates (one row each)."""
    n = len(fused)
    x = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if n == 0:
        return x
    x[:, 0] = np.asarray(fused, dtype=np.float64) * rrf_k
    lex = np.array([0.0 if v is None else v for v in lexical])
    top = float(lex.max()) if lex.size else 0.0
    x[:, 1] = lex / top if top > 0 else 0.0
    x[:, 2] = [0.0 if r is None else 1.0 / r for r in lexical_rank]
    x[:, 3] = [0.0 if v is None else v for v in vector]
    x[:, 4] = [0.0 if r is None else 1.0 / r for r in vector_rank]
    x[:, 5] = priors
    return x


def weights_of(state: Any) -> np.ndarray:
    """The weights kept in the index's state (the initial ones if none)."""
    ranker = state.get("ranker") if isinstance(state, Mapping) else None
    stored = (ranker or {}).get("weights")
    if not stored or len(stored) != len(FEATURES):
        return np.asarray(INITIAL_WEIGHTS, dtype=np.float64)
    return np.asarray(stored, dtype=np.float64)


def initial_state() -> dict[str, Any]:
    return {"weights": list(INITIAL_WEIGHTS), "features": list(FEATURES), "priors": {}, "trained": 0}


def learn(ranker: Mapping[str, Any] | None, doc_ids: Sequence[str], x: np.ndarray, j: Judgement) -> dict[str, Any]:
    """The ranker state after one judgement on a search whose hits were
    ``doc_ids`` with features ``x`` (as the search saw them)."""
    state = dict(ranker or initial_state())
    w = np.asarray(state.get("weights") or INITIAL_WEIGHTS, dtype=np.float64)
    priors = {k: list(v) for k, v in dict(state.get("priors") or {}).items()}
    counts = priors.setdefault(j.doc_id, [0, 0])
    counts[0 if j.relevant else 1] += 1
    rows = [i for i, d in enumerate(doc_ids) if d == j.doc_id]
    if rows and len(x):
        judged = x[rows[0]]
        others = [i for i, d in enumerate(doc_ids) if d != j.doc_id]
        for i in others:
            diff = judged - x[i] if j.relevant else x[i] - judged
            margin = float(w @ diff)
            w += LEARNING_RATE * (1.0 / (1.0 + math.exp(min(margin, 30.0)))) * diff / max(1, len(others))
            w *= 1.0 - L2
    state.update(weights=[round(float(v), 6) for v in w], features=list(FEATURES), priors=priors,
                 trained=int(state.get("trained", 0)) + 1)  # fmt: skip
    return state
