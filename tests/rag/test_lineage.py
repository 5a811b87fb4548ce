"""Freshness under a stream of edits, audit and repair, generations,
crashes and several processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import tidal
from tidal import rag

from .common import CountingEmbedder, Doc, make_app

REPO = Path(__file__).resolve().parents[2]


def text(d: Doc) -> str:
    return f"{d.title}\n{d.body}"


def test_no_search_returns_a_chunk_older_than_a_committed_edit(app: tidal.App, emb: CountingEmbedder) -> None:
    docs = app.insert_many([Doc(id=f"d{i}", title=f"doc {i}", body=f"apple banana v0 {i}") for i in range(10)])
    ix = rag.Index(app, "docs", source=Doc, text=text, embedder=emb)
    ix.flush()
    committed: dict[str, str] = {d.id: rag.lineage.version_of(d.updated_at) for d in docs}
    deleted: set[str] = set()
    stop = threading.Event()
    errors: list[str] = []
    searches = [0]

    def edit() -> None:
        for n in range(1, 120):
            doc_id = f"d{n % 10}"
            if n % 17 == 0 and doc_id not in deleted:
                app.delete(Doc, doc_id)
                deleted.add(doc_id)
            elif doc_id in deleted:
                stored = app.insert(Doc(id=doc_id, title=f"doc {n}", body=f"apple banana v{n}"))
                deleted.discard(doc_id)
                committed[doc_id] = rag.lineage.version_of(stored.updated_at)
            else:
                stored = app.update(Doc(id=doc_id, title=f"doc {n}", body=f"apple banana v{n}"))
                committed[doc_id] = rag.lineage.version_of(stored.updated_at)
            time.sleep(0.005)
        stop.set()

    def search() -> None:
        while not stop.is_set():
            known, gone = dict(committed), set(deleted)  # committed before the search starts
            for h in ix.search("apple banana", k=10):
                # A document deleted before the search may be back by the
                # time it looks (inserted again): only a newer version may show.
                if h.doc_id in gone and h.doc_version <= known[h.doc_id]:
                    errors.append(f"deleted {h.doc_id} returned")
                elif h.doc_version < known[h.doc_id]:
                    errors.append(f"{h.doc_id} at {h.doc_version}, committed {known[h.doc_id]}")
            searches[0] += 1

    threads = [threading.Thread(target=edit), threading.Thread(target=search)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    assert searches[0] > 20
    ix.flush()
    assert ix.audit().clean
    assert len(ix.search("apple banana", k=10)) == 10 - len(deleted)


def test_audit_finds_and_repairs_injected_divergence(app: tidal.App, emb: CountingEmbedder) -> None:
    app.insert_many([Doc(id=f"d{i}", title=f"doc {i}", body=f"text of document {i}") for i in range(6)])
    ix = rag.Index(app, "docs", source=Doc, text=text, embedder=emb)
    ix.flush()
    assert ix.audit().clean
    write = {"write": True}
    app.sql("DELETE FROM rag_chunks WHERE doc_id = 'd0'", **write)
    app.sql("UPDATE rag_chunks SET content_hash = 'corrupt' WHERE doc_id = 'd1'", **write)
    app.sql("UPDATE rag_chunks SET embedder = 'other' WHERE doc_id = 'd2'", **write)
    app.sql(
        "INSERT INTO rag_chunks (id, index_name, generation, doc_id, doc_version, chunk_no, text, content_hash,"
        " embedder, vector, fields, seq, live) SELECT 'docs/1/ghost/0', index_name, generation, 'ghost',"
        " doc_version, 0, text, content_hash, embedder, vector, fields, seq, live FROM rag_chunks WHERE doc_id = 'd3'",
        **write,
    )
    with app.db.begin() as conn:  # an edit the index never heard of (as after a restore)
        table = app.db.relation(Doc).table
        conn.execute(table.update().where(table.c.id == "d4").values(body="restored other text"))
    report = ix.audit()
    assert (report.missing, report.stale, report.orphaned, report.wrong_embedder) == (
        ["d0"],
        ["d1", "d4"],
        ["ghost"],
        ["d2"],
    )
    assert not report.clean and report.counts() == {"missing": 1, "stale": 2, "orphaned": 1, "wrong_embedder": 1}
    before = emb.texts
    repaired = ix.audit(repair=True)
    assert repaired.repaired and emb.texts - before == repaired.embedded <= 4
    assert ix.audit().clean
    assert ix.stats().last_audit["clean"] is True
    assert "ghost" not in {h.doc_id for h in ix.search("text of document", k=10)}


def test_changing_the_embedder_rebuilds_and_switches_atomically(tmp_path: Path) -> None:
    old, new = CountingEmbedder("standin-64", 64), CountingEmbedder("standin-32", 32)
    with make_app(tmp_path) as app:
        app.insert_many([Doc(id=f"d{i}", title=f"doc {i}", body=f"pear plum {i}") for i in range(8)])
        rag.Index(app, "docs", source=Doc, text=text, embedder=old).flush()
    new.gate = threading.Event()  # hold the rebuild back
    with make_app(tmp_path) as app:
        ix = rag.Index(app, "docs", source=Doc, text=text, embedder=new, previous_embedders=[old])
        time.sleep(0.3)
        hits = ix.search("pear plum", k=3)
        assert hits.generation == 1 and len(hits) == 3 and hits[0].vector is not None
        assert ix.stats().building == 2
        new.gate.set()
        ix.wait_ready(60)
        hits = ix.search("pear plum", k=3)
        assert hits.generation == 2 and len(hits) == 3
        assert {r["embedder"] for r in app.sql("SELECT DISTINCT embedder FROM rag_chunks")} == {"standin-32"}
        assert ix.stats().building is None and ix.audit().clean


def _child(mode: str, where: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.rag.proc", mode, str(where)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_kill_9_while_indexing_then_restart_audits_clean(tmp_path: Path) -> None:
    child = _child("index", tmp_path)
    assert child.stdout is not None and child.stdout.readline().strip() == "inserted"
    time.sleep(1.0)  # midway: some documents indexed, others queued or in flight
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    with make_app(tmp_path) as app:
        indexed = app.sql("SELECT count(DISTINCT doc_id) AS n FROM rag_chunks WHERE live")[0]["n"]
        assert 0 < indexed < 200
        ix = rag.Index(app, "docs", source=Doc, text=text, embedder=CountingEmbedder())
        ix.flush(timeout=120)
        report = ix.audit()
        assert report.clean and report.documents == 200, report.counts()


def test_a_second_process_inserting_is_seen_by_this_ones_searches(tmp_path: Path) -> None:
    with make_app(tmp_path) as app:
        ix = rag.Index(app, "docs", source=Doc, text=text, embedder=CountingEmbedder())
        child = _child("insert", tmp_path)
        assert child.stdout is not None
        ids = [line.strip() for line in child.stdout]
        child.wait()
        child.stdout.close()
        assert len(ids) == 20
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = {h.doc_id for h in ix.search("quokka", k=50)}
            if found == set(ids):
                break
            time.sleep(0.1)
        assert found == set(ids)
        assert ix.search("zebra7 quokka", k=1)[0].doc_id == ids[7]


def test_another_process_sees_index_changes_through_the_change_sequence(tmp_path: Path) -> None:
    """Two apps on one database (as two processes): the reader's mirror
    catches up from rag_chunks only."""
    with make_app(tmp_path) as writer, make_app(tmp_path) as reader:
        wx = rag.Index(writer, "docs", source=Doc, text=text, embedder=CountingEmbedder())
        rx = rag.Index(reader, "docs", source=Doc, text=text, embedder=CountingEmbedder())
        writer.insert(Doc(id="a", title="a", body="walrus tusks"))
        wx.flush()
        assert [h.doc_id for h in rx.search("walrus", k=1)] == ["a"]
        writer.update(Doc(id="a", title="a", body="narwhal tusks"))
        wx.flush()
        assert [h.text for h in rx.search("narwhal", k=1)] == ["a\nnarwhal tusks"]
        assert rx.search("walrus", k=5).hits == [] or all("walrus" not in h.text for h in rx.search("walrus"))
