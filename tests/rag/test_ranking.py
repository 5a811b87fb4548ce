"""Learned ranking: feedback on searches trains the index's ranker, kept as
versioned state of its ``search`` instance and rolled back like any key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tidal
from tidal import admin, rag
from tidal.config import Settings
from tidal.rag import ranking

from .common import CountingEmbedder, Doc
from .test_index import load_topics, open_index

QUERY = "statement names"
TOPICS = ["nonlocal", "global", "import", "del", "pass", "assert", "return", "raise"]


def position(hits: rag.Hits, doc_id: str) -> int:
    return next(i for i, h in enumerate(hits) if h.doc_id == doc_id)


def test_feedback_moves_a_document_up_and_a_rollback_restores_the_old_order(
    tmp_path: Path, emb: CountingEmbedder
) -> None:
    # Enough state history kept to reach back to the ranker's first version.
    settings = Settings(history_versions=100)  # type: ignore[call-arg]
    app = tidal.App("rag", store=f"sqlite:///{tmp_path / 'rag.db'}", home=tmp_path / "home", settings=settings)
    with app:
        check_feedback_and_rollback(app, emb)


def check_feedback_and_rollback(app: tidal.App, emb: CountingEmbedder) -> None:
    load_topics(app, TOPICS)
    ix = open_index(app, emb)
    ix.flush()
    before = ix.search(QUERY, k=10)
    target = before[len(before) - 1].doc_id
    assert position(before, target) > 0

    for _ in range(5):
        hits = ix.search(QUERY, k=10)
        ix.feedback(hits, target, relevant=True)
        ix.feedback(hits, next(h.doc_id for h in before if h.doc_id != target), relevant=False)
    ix.flush_ranker()
    learned = ix.ranker()
    assert learned["trained"] == 10 and learned["priors"][target] == [5, 0]
    assert learned["weights"] != list(ranking.INITIAL_WEIGHTS)
    after = ix.search(QUERY, k=10)
    assert position(after, target) < position(before, target)
    assert after[0].ranked is not None and after[0].ranked >= after[1].ranked  # type: ignore[operator]

    history = admin.key_history(app, ix.component.name, "search", "ranker")
    assert len(history) >= 2
    admin.rollback(app, ix.component.name, "search", "ranker", version=history[-1].version)
    assert ix.ranker()["trained"] == 0 and ix.ranker()["weights"] == list(ranking.INITIAL_WEIGHTS)
    restored = ix.search(QUERY, k=10)
    assert [(h.doc_id, h.chunk_no) for h in restored] == [(h.doc_id, h.chunk_no) for h in before]


def test_feedback_convention_label_score_and_comment() -> None:
    hits = [{"doc_id": "a"}, {"doc_id": "b"}]
    assert ranking.judgement("relevant", None, "b", hits) == ranking.Judgement("b", True)
    assert ranking.judgement("click", None, None, hits) == ranking.Judgement("a", True)
    assert ranking.judgement("irrelevant", None, "a", hits) == ranking.Judgement("a", False)
    assert ranking.judgement(None, -1.0, "b", hits) == ranking.Judgement("b", False)
    assert ranking.judgement(None, 1.0, None, hits) == ranking.Judgement("a", True)
    assert ranking.judgement("correction", None, "x", hits) is None
    assert ranking.judgement(None, 0.0, "x", hits) is None


def test_a_relevant_judgement_raises_the_document_over_those_it_was_below() -> None:
    x = np.array([[2.0, 1, 1, 0.5, 1, 0], [1.9, 0.5, 0.5, 0.4, 0.5, 0], [0.1, 0.2, 0.1, 0.9, 1, 0]])
    state = ranking.initial_state()
    for _ in range(30):
        state = ranking.learn(state, ["a", "b", "c"], x, ranking.Judgement("c", True))
        x[:, 5] = [ranking.prior(state["priors"].get(d)) for d in "abc"]
    scores = x @ np.asarray(state["weights"])
    assert int(np.argmax(scores)) == 2


def test_feedback_on_other_runs_is_ignored(app: tidal.App, emb: CountingEmbedder) -> None:
    load_topics(app, ["nonlocal", "global"])
    ix = open_index(app, emb)
    ix.flush()
    hits = ix.search("nonlocal", k=2)
    app.feedback(hits.run_id or "", label="correction", comment="nonlocal")
    app.feedback(hits.run_id or "", score=0.0)
    ix.flush_ranker()
    assert ix.ranker()["trained"] == 0
    with pytest.raises(ValueError, match="no run id"):
        ix.feedback(rag.Hits("q", []), "nonlocal")
    assert Doc is not None
