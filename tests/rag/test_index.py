"""rag.Index: incremental indexing, deletes, filters, ranking, versions."""

from __future__ import annotations

import pydoc_data.topics

import pytest

import tidal
from tidal import rag

from .common import CountingEmbedder, Doc

TOPICS = pydoc_data.topics.topics


def text(d: Doc) -> str:
    return f"{d.title}\n{d.body}"


def open_index(app: tidal.App, emb: CountingEmbedder, **options: object) -> rag.Index:
    return rag.Index(app, "docs", source=Doc, text=text, embedder=emb, fields=("lang",), **options)  # type: ignore[arg-type]


def load_topics(app: tidal.App, names: list[str] | None = None) -> dict[str, Doc]:
    docs = [Doc(id=name, title=name, body=TOPICS[name]) for name in names or sorted(TOPICS)]
    return {d.id: d for d in app.insert_many(docs)}


def test_indexes_existing_and_new_records_and_every_hit_names_its_source(app: tidal.App, emb: CountingEmbedder) -> None:
    load_topics(app, ["nonlocal", "global", "if"])
    ix = open_index(app, emb)
    later = app.insert(Doc(id="while", title="while", body=TOPICS["while"]))
    ix.flush()
    hits = ix.search("nonlocal statement enclosing scope", k=3)
    assert hits[0].doc_id == "nonlocal"
    assert {h.doc_id for h in ix.search("while loop", k=10)} >= {"while"}
    for h in hits:
        stored = app.get(Doc, h.doc_id)
        assert stored is not None and h.doc_version == rag.lineage.version_of(stored.updated_at)
        assert " ".join(h.text.split()) in " ".join(text(stored).split()) and h.chunk_no >= 0 and h.score > 0
    assert later.id == "while"
    stats = ix.stats()
    assert (stats.documents, stats.documents_indexed, stats.lag) == (4, 4, 0)


def test_search_is_a_run_with_its_hits(app: tidal.App, emb: CountingEmbedder) -> None:
    load_topics(app, ["nonlocal", "global"])
    ix = open_index(app, emb)
    ix.flush()
    hits = ix.search("nonlocal", k=2)
    assert hits.run_id
    app.flush_runs()
    run = app.get(tidal.relations.Run, hits.run_id)
    assert run is not None and run.component == "rag:docs" and run.flow == "search"
    assert [h["doc_id"] for h in run.result["hits"]] == [h.doc_id for h in hits]
    app.feedback(hits.run_id, label="relevant")


def test_unchanged_corpus_reindexed_embeds_nothing_and_one_edit_embeds_only_its_changed_chunks(
    app: tidal.App, emb: CountingEmbedder
) -> None:
    docs = load_topics(app, sorted(TOPICS)[:30])
    ix = open_index(app, emb)
    ix.flush()
    first = emb.texts
    chunks = ix.stats().chunks
    assert first > 0 and chunks >= 30
    # Replay every record through the trigger, then audit with repair: nothing to embed.
    app.backfill(ix.component, "index")
    ix.flush()
    report = ix.audit(repair=True)
    assert report.clean and emb.texts == first
    # Edit one paragraph of a long topic: only its chunk is embedded again.
    name = max(docs, key=lambda n: len(docs[n].body))
    doc = docs[name]
    paragraphs = doc.body.split("\n\n")
    paragraphs[len(paragraphs) // 2] += " An added sentence about zebras."
    before = emb.texts
    app.update(doc.model_copy(update={"body": "\n\n".join(paragraphs)}))
    ix.flush()
    n_chunks = len([r for r in app.query(rag.Chunk, {"doc_id": name, "live": True})])
    assert n_chunks > 3
    assert 1 <= emb.texts - before <= 2
    assert ix.search("zebras", k=1)[0].doc_id == name
    assert ix.audit().clean


def test_a_new_app_on_the_same_database_embeds_nothing(tmp_path, emb: CountingEmbedder) -> None:  # type: ignore[no-untyped-def]
    from .common import make_app

    with make_app(tmp_path) as app:
        load_topics(app, sorted(TOPICS)[:10])
        open_index(app, emb).flush()
    first = emb.texts
    with make_app(tmp_path) as app:
        ix = open_index(app, emb)
        app.backfill(ix.component, "index")
        ix.flush()
        assert emb.texts == first
        assert ix.search("for loop", k=3).hits


def test_deletes_remove_every_chunk(app: tidal.App, emb: CountingEmbedder) -> None:
    load_topics(app, ["nonlocal", "global", "for", "while"])
    ix = open_index(app, emb)
    ix.flush()
    app.delete(Doc, "nonlocal")
    # At once (before the index caught up): the live check hides it.
    assert "nonlocal" not in {h.doc_id for h in ix.search("nonlocal", k=10)}
    ix.flush()
    assert "nonlocal" not in {h.doc_id for h in ix.search("nonlocal", k=10)}
    assert app.query(rag.Chunk, {"doc_id": "nonlocal", "live": True}) == []
    assert ix.stats().documents_indexed == 3


def test_filters_on_source_fields(app: tidal.App, emb: CountingEmbedder) -> None:
    app.insert_many([Doc(id=f"d{i}", title=f"loops {i}", body="for loops and while loops", lang=lang)
                     for i, lang in enumerate(["en", "fr", "en", "de"])])  # fmt: skip
    ix = open_index(app, emb)
    ix.flush()
    assert {h.doc_id for h in ix.search("loops", where={"lang": "en"})} == {"d0", "d2"}
    assert {h.doc_id for h in ix.search("loops", where={"lang": "de"})} == {"d3"}
    app.update(Doc(id="d3", title="loops 3", body="for loops", lang="fr"))
    ix.flush()
    assert ix.search("loops", where={"lang": "de"}).hits == []
    with pytest.raises(ValueError, match="not among the index's fields"):
        ix.search("loops", where={"title": "x"})


def test_hybrid_ranking_on_the_help_topics(app: tidal.App, emb: CountingEmbedder) -> None:
    load_topics(app)
    ix = open_index(app, emb)
    ix.flush()
    for query, topic in [("nonlocal", "nonlocal"), ("the try statement except finally", "try"),
                         ("lambda expressions anonymous functions", "lambda"),
                         ("assert statement debugging", "assert")]:  # fmt: skip
        found = [h.doc_id for h in ix.search(query, k=5)]
        assert topic in found[:3], (query, found)
    hit = ix.search("nonlocal", k=1)[0]
    assert hit.lexical is not None and hit.vector is not None and hit.lexical_rank == 1


def test_answer_and_tool(app: tidal.App, emb: CountingEmbedder) -> None:
    from tidal import models
    from tidal.models.http import build_app, serving
    from tidal.models.standin import StandIn

    load_topics(app, ["nonlocal", "global"])
    ix = open_index(app, emb)
    ix.flush()
    with serving(build_app(StandIn())) as url:
        llm = models.connect(f"{url}#stand-in")
        answer = rag.answer(llm, ix, "What does nonlocal do?", k=2)
        assert answer.text and answer.citations[0].doc_id == "nonlocal"
        app.flush_runs()
        run = app.get(tidal.relations.Run, answer.run_id)
        assert run is not None and run.flow == "answer"
        assert run.result["citations"][0]["doc_version"] == answer.citations[0].doc_version
        calls = app.sql("SELECT operation FROM model_calls WHERE run_id = :r", {"r": answer.run_id}).tuples()
        assert ("chat",) in calls
    tool = ix.as_tool()
    result, run_id = tool.run({"query": "nonlocal", "k": 1})
    assert result[0]["doc_id"] == "nonlocal" and run_id


def test_with_the_offline_minilm_embedder(app: tidal.App) -> None:
    from tidal import models

    minilm = models.embedder("local://minilm")
    load_topics(app, ["nonlocal", "global", "for", "while", "try", "with"])
    ix = rag.Index(app, "docs", source=Doc, text=text, embedder=minilm)
    ix.flush(timeout=100)
    hits = ix.search("how do I catch an exception?", k=3)
    assert hits[0].doc_id == "try" and hits[0].vector is not None and len(hits) == 3
    assert ix.audit().clean
    calls = app.sql("SELECT count(*) AS n FROM model_calls WHERE operation = 'embedding'")[0]["n"]
    assert calls >= 2
