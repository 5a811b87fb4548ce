"""Retrieval benchmarks for ``tidal.rag.Index`` (standalone):

    python -m benchmarks.rag_index freshness     # MiniLM, 20 inserts/s: time until searchable
    python -m benchmarks.rag_index search        # hybrid k=10 at 10k and 100k chunks
    python -m benchmarks.rag_index incremental   # help topics: unchanged / 1% edit / 1% delete

``search`` loads random text (a Zipf draw over 20k made-up words, 150 words
a chunk, 10 chunks a document) and random 384-d unit vectors straight into
``rag_chunks`` and the source table, and queries with 3 random words and a
random unit vector given as ``vector=`` (the query's embedding is left out);
each search is the whole ``index.search`` (a serve run, the catch-up check,
the live check against the source, the runs log).
"""

from __future__ import annotations

import json
import pydoc_data.topics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import tidal
from tidal import models, rag
from tidal.config import Settings
from tidal.rag.lineage import chunk_id, version_of

from .common import percentile, scratch_dir


class Doc(tidal.Record):
    title: str
    body: str


def text(d: Doc) -> str:
    return f"{d.title}\n{d.body}"


def open_app(folder: Path) -> tidal.App:
    return tidal.App("rag", store=f"sqlite:///{folder / 'rag.db'}", home=folder, settings=Settings())


class Counting:
    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.texts = inner, inner.name, 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return np.asarray(self.inner.embed(texts))


class Fixed:
    """An embedder for the scale test: every text one random unit vector
    (no document is embedded through it; queries bring their vector)."""

    def __init__(self, dim: int) -> None:
        self.name, self.dim = "random-384", dim
        v = np.random.default_rng(1).standard_normal(dim).astype(np.float32)
        self.v = v / np.linalg.norm(v)

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.tile(self.v, (len(texts), 1))


def freshness(n: int = 100, rate: float = 20.0) -> dict[str, Any]:
    minilm = models.embedder("local://minilm")
    minilm.embed(["warm up"])
    t0 = time.perf_counter()
    minilm.embed([f"paragraph {i} " + "words of a paragraph of about five hundred characters " * 9 for i in range(20)])
    embed_rate = 20 / (time.perf_counter() - t0)
    with scratch_dir() as folder, open_app(folder) as app:
        ix = rag.Index(app, "docs", source=Doc, text=text, embedder=minilm, shards=1)
        zero = [0.0] * 384
        inserted: dict[int, float] = {}
        seen: dict[int, float] = {}
        done = threading.Event()

        def watch() -> None:
            while not done.is_set() or len(seen) < len(inserted):
                for i, at in list(inserted.items()):
                    # Found by its own marker word (the zero query vector ranks
                    # every chunk alike, so a hit must have a lexical part).
                    hits = ix.search(f"marker{i}", k=1, vector=zero) if i not in seen else None
                    if hits and hits[0].lexical is not None and hits[0].doc_id == ids[i]:
                        seen[i] = time.perf_counter() - at
                time.sleep(0.005)
                if done.is_set() and time.perf_counter() - last[0] > 60:
                    break

        last = [time.perf_counter()]
        insert_ms: list[float] = []
        ids: dict[int, str] = {}
        watcher = threading.Thread(target=watch)
        watcher.start()
        start = time.perf_counter()
        for i in range(n):
            body = f"marker{i} " + " ".join(f"word{(i * 7 + j) % 97} text" for j in range(60))
            # Timed from before the insert call (its commit is inside it).
            before = time.perf_counter()
            ids[i] = f"doc{i}"
            app.insert(Doc(id=ids[i], title=f"doc {i}", body=body))
            insert_ms.append((time.perf_counter() - before) * 1000)
            inserted[i] = last[0] = before
            time.sleep(max(0.0, start + (i + 1) / rate - time.perf_counter()))
        done.set()
        watcher.join()
        lags = [seen[i] * 1000 for i in seen]
        return {"docs": n, "rate_per_s": rate, "searchable": len(seen), "p50_ms": percentile(lags, 50),
                "p99_ms": percentile(lags, 99), "max_ms": max(lags), "insert_call_p50_ms": percentile(insert_ms, 50),
                "minilm_chunks_per_s": round(embed_rate, 1),
                "chars_per_doc": len(text(Doc(title="doc 0", body=body)))}  # fmt: skip


def _words(rng: np.random.Generator, vocab: list[str], n: int) -> list[str]:
    ranks = np.minimum(rng.zipf(1.3, n), len(vocab)) - 1
    return [vocab[r] for r in ranks]


def load_scale(app: tidal.App, chunks: int, dim: int = 384, per_doc: int = 10) -> None:
    rng = np.random.default_rng(0)
    vocab = [f"w{i}x{(i * 2654435761) % 9973}" for i in range(20_000)]
    db = app.db
    db.register(Doc)
    now = datetime.now(UTC)
    version = version_of(now)
    docs = chunks // per_doc
    lineage = rag.lineage.Lineage(db, "docs")
    config = json.dumps({"embedder": "random-384", "chunking": rag.Chunking(1000, 0).describe(), "fields": []},
                        sort_keys=True)  # fmt: skip
    lineage.create(config)
    table, ctable = db.relation(Doc).table, lineage.chunks
    seq = 0
    for start in range(0, docs, 1000):
        drows, crows = [], []
        for d in range(start, min(docs, start + 1000)):
            did = f"doc{d}"
            drows.append({"id": did, "created_at": now, "updated_at": now, "title": did, "body": ""})
            vectors = rng.standard_normal((per_doc, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            for c in range(per_doc):
                seq += 1
                crows.append({"id": chunk_id("docs", 1, did, c), "created_at": now, "updated_at": now,
                              "index_name": "docs", "generation": 1, "doc_id": did, "doc_version": version,
                              "chunk_no": c, "text": " ".join(_words(rng, vocab, 150)), "content_hash": f"h{seq}",
                              "embedder": "random-384", "vector": vectors[c].tobytes(), "fields": {}, "seq": seq,
                              "live": True})  # fmt: skip
        with db.begin() as conn:
            conn.execute(table.insert(), drows)
            conn.execute(ctable.insert(), crows)
    with db.begin() as conn:
        lineage.set_index(conn, seq=seq)


def search(sizes: tuple[int, ...] = (10_000, 100_000), queries: int = 300) -> list[dict[str, Any]]:
    out = []
    for size in sizes:
        with scratch_dir() as folder:
            with open_app(folder) as app:
                load_scale(app, size)
            with open_app(folder) as app:
                ix = rag.Index(app, "docs", source=Doc, text=text, embedder=Fixed(384))
                rng = np.random.default_rng(2)
                vocab = [f"w{i}x{(i * 2654435761) % 9973}" for i in range(20_000)]
                t0 = time.perf_counter()
                ix.search("warm", k=10, vector=[0.0] * 384)
                load_s = time.perf_counter() - t0
                mirror = ix._mirror
                assert mirror is not None
                t0 = time.perf_counter()
                while size >= 20_000 and not mirror.vectors.uses_graph and time.perf_counter() - t0 < 900:
                    time.sleep(0.5)
                graph_s = time.perf_counter() - t0
                lat = []
                for _ in range(queries):
                    q = " ".join(_words(rng, vocab, 3))
                    v = rng.standard_normal(384).astype(np.float32)
                    v /= np.linalg.norm(v)
                    t = time.perf_counter()
                    hits = ix.search(q, k=10, vector=v.tolist())
                    lat.append((time.perf_counter() - t) * 1000)
                    assert len(hits) == 10
                out.append({"chunks": size, "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
                            "first_load_s": round(load_s, 1), "graph_build_s": round(graph_s, 1),
                            "graph": mirror.vectors.uses_graph})  # fmt: skip
    return out


def incremental(embedder_url: str = "local://minilm") -> dict[str, Any]:
    topics = pydoc_data.topics.topics
    emb = Counting(models.embedder(embedder_url))
    emb.embed(["warm up"])
    emb.texts = 0
    with scratch_dir() as folder, open_app(folder) as app:
        app.insert_many([Doc(id=n, title=n, body=topics[n]) for n in sorted(topics)])
        t0 = time.perf_counter()
        ix = rag.Index(app, "docs", source=Doc, text=text, embedder=emb)
        ix.flush(timeout=600)
        first = {"wall_s": time.perf_counter() - t0, "embedded": emb.texts, "chunks": ix.stats().chunks}
        emb.texts = 0
        t0 = time.perf_counter()
        app.backfill(ix.component, "index")
        ix.flush(timeout=600)
        unchanged = {"wall_s": time.perf_counter() - t0, "embedded": emb.texts}
        emb.texts = 0
        doc = app.get(Doc, "nonlocal")
        assert doc is not None
        t0 = time.perf_counter()
        app.update(doc.model_copy(update={"body": doc.body.replace("rebind", "re-bind", 1)}))
        ix.flush(timeout=600)
        edit = {"docs": 1, "wall_s": time.perf_counter() - t0, "embedded": emb.texts}
        t0 = time.perf_counter()
        app.delete(Doc, "global")
        ix.flush(timeout=600)
        stale = sum(h.doc_id == "global" for q in ("global statement", "global", "module namespace global names")
                    for h in ix.search(q, k=10))  # fmt: skip
        delete = {"docs": 1, "wall_s": time.perf_counter() - t0, "stale_hits_top10": stale,
                  "chunks_left": len(app.query(rag.Chunk, {"doc_id": "global", "live": True}))}  # fmt: skip
        return {"embedder": emb.name, "docs": len(topics), "first": first, "unchanged": unchanged, "edit_1": edit,
                "delete_1": delete, "audit_clean": ix.audit().clean}  # fmt: skip


def main(argv: list[str]) -> None:
    parts = argv or ["incremental", "search", "freshness"]
    for part in parts:
        result: Any
        if part == "freshness":
            result = freshness()
        elif part == "search":
            result = search()
        elif part == "incremental":
            result = incremental()
        else:
            raise SystemExit(f"unknown part {part!r}: freshness, search, incremental")
        print(json.dumps({part: result}, default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
