"""``rag.Index``: a hybrid index over a relation, kept in step with it by
the relation's own triggers.

Each index is a component, ``rag:<name>``: its update op ``index`` fires on
every insert, update and delete of the source relation (routed to one of
``shards`` instances by document id, so that one document's changes apply in
order and different documents index in parallel) and brings that document's
chunks up to date (:func:`tidal.rag.sync.sync_doc`). Its serve ops
``search`` and ``answer`` make every search a run in the runs log.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from ..models import Embedder, Tool
from ..relations.builtin import Feedback, Run
from . import ranking
from .audit import AuditReport, audit
from .chunking import Chunking
from .hits import Hit, Hits
from .lineage import Head, IndexRow, Lineage, version_of
from .mirror import RRF_K, Mirror
from .prompt import messages
from .sync import SyncResult, Target, sync_doc
from .vectors import ANN_THRESHOLD

if TYPE_CHECKING:
    from ..app import App
    from ..models import Model
    from ..relations import Record

log = logging.getLogger("tidal.rag")

SEARCH_INSTANCE = "search"
"""The index component's instance that serves searches and keeps the ranker."""
LEARN = "learn_ranking"
"""The flow of the feedback trigger that trains the ranker."""

CHARS_PER_TOKEN = 4
"""``chunk_tokens`` is turned into characters at this rate (English text)."""

_registry: weakref.WeakKeyDictionary[Any, dict[str, Index]] = weakref.WeakKeyDictionary()


def indexes(app: App) -> dict[str, Index]:
    """The indexes defined on ``app`` in this process, by name."""
    return dict(_registry.get(app, {}))


@dataclass(frozen=True)
class IndexStats:
    """An index's size and freshness. ``lag``: source changes not indexed
    yet (changes waiting in the outbox plus queued index ops)."""

    name: str
    generation: int
    building: int | None
    embedder: str
    documents: int
    documents_indexed: int
    chunks: int
    lag: int
    last_audit: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Citation:
    """A source ``rag.answer`` gave the model: document, version, chunk."""

    doc_id: str
    doc_version: str
    chunk_no: int


@dataclass(frozen=True)
class Answer:
    """The model's answer, the chunks it was given (``citations``, in the
    order of the prompt's [1], [2], ...) and the run that made it."""

    text: str
    citations: list[Citation]
    run_id: str | None = None


class Index:
    """A hybrid (BM25 + vector) index over the relation ``source``::

        docs = rag.Index(app, "docs", source=Doc, text=lambda d: f"{d.title}\\n{d.body}",
                         embedder=models.embedder("local://minilm"), fields=("lang",))
        hits = docs.search("what does nonlocal do?", k=5, where={"lang": "en"})
        hits[0].doc_id, hits[0].doc_version, hits[0].chunk_no, hits[0].text, hits[0].score

    ``text`` makes a record's text; ``chunk_chars`` (or ``chunk_tokens``)
    and ``overlap`` how it is cut; ``fields`` the source fields kept with
    each chunk for ``where`` filters. Records already stored are indexed in
    the background. Changing the embedder or the chunking starts a new
    generation, built in the background; searches use the old one until the
    new one is complete (``previous_embedders`` lets this process embed
    queries for the old one meanwhile; without it they are lexical only).
    """

    def __init__(
        self,
        app: App,
        name: str,
        *,
        source: type[Record],
        text: Callable[[Any], str],
        embedder: Embedder,
        chunk_chars: int | None = None,
        chunk_tokens: int | None = None,
        overlap: int = 0,
        fields: Sequence[str] = (),
        shards: int = 4,
        previous_embedders: Sequence[Embedder] = (),
        ann_threshold: int = ANN_THRESHOLD,
    ) -> None:
        if chunk_chars is not None and chunk_tokens is not None:
            raise ValueError("give chunk_chars or chunk_tokens, not both")
        unknown = [f for f in fields if f not in source.model_fields]
        if unknown:
            raise ValueError(f"fields {unknown} are not fields of {source.__name__}")
        self.app = app
        self.name = name
        self.source = source
        self.text = text
        self.embedder = embedder
        self.fields = tuple(fields)
        self.shards = shards
        self.chunking = Chunking(chunk_chars or (chunk_tokens or 250) * CHARS_PER_TOKEN, overlap)
        self.config = json.dumps(
            {"embedder": embedder.name, "chunking": self.chunking.describe(), "fields": sorted(self.fields)},
            sort_keys=True,
        )
        self._embedders = {e.name: e for e in previous_embedders} | {embedder.name: embedder}
        self._ann_threshold = ann_threshold
        self.lineage = Lineage(app.db, name)
        self._mirror: Mirror | None = None
        self._mirror_lock = threading.Lock()
        self._rebuilder: threading.Thread | None = None
        self.component = app.component(f"rag:{name}", cache_ttl=0)
        self._define()
        self.lineage.create(self.config)
        _registry.setdefault(app, {})[name] = self
        self._searcher = self.component(SEARCH_INSTANCE)
        self._start()

    # -- the component ----------------------------------------------------

    def _shard(self, record: Any) -> str:
        return f"shard-{zlib.crc32(str(record.id).encode()) % self.shards}"

    def _define(self) -> None:
        comp = self.component

        @comp.init_state
        def setup() -> dict[str, Any]:
            return {"ranker": ranking.initial_state()}

        @comp.update("index", on=self.source, instance=self._shard)
        def index(state: Any, props: Any) -> None:
            self.sync(props["record"].id)

        @comp.serve("search")
        def search(state: Any, props: Any) -> dict[str, Any]:
            vector = props.get("vector")
            given = None if vector is None else np.asarray(vector, dtype=np.float32)
            ranker = state.get("ranker")
            hits, x, generation = self._search(props["query"], int(props.get("k", 10)), props.get("where"), given,
                                               ranker)  # fmt: skip
            return {"generation": generation, "hits": [h.as_dict() for h in hits],
                    "features": [[round(float(v), 6) for v in row] for row in x]}  # fmt: skip

        @comp.serve("answer")
        def answer(state: Any, props: Any) -> dict[str, Any]:
            model = self._models[props["model"]]
            hits, _, generation = self._search(props["question"], int(props.get("k", 5)), props.get("where"), None,
                                               state.get("ranker"))  # fmt: skip
            reply = model.chat(messages(props["question"], hits), **props.get("params", {}))
            cites = [{"doc_id": h.doc_id, "doc_version": h.doc_version, "chunk_no": h.chunk_no} for h in hits]
            return {"text": reply.text, "citations": cites, "generation": generation, "model": model.name}

        # Feedback on a search trains the ranker, kept as the key ``ranker``
        # of the instance that serves searches: a search reads it with its
        # state, and a rollback of that key restores the old order.
        comp.update(LEARN, on=Feedback, events=["insert"], instance=SEARCH_INSTANCE)(self._learn)

        self._models: dict[str, Model] = {}

    # -- generations ------------------------------------------------------

    def _head(self) -> Head:
        head = self.lineage.head()
        if head is None:
            raise RuntimeError(f"index {self.name!r} has no row in rag_indexes")
        return head

    def _start(self) -> None:
        """Adopt the stored generation if its configuration is ours, else
        start (or resume) building one that is; index what is stored."""
        head = self._head()
        if head.active_config == self.config:
            if head.seq == 0:
                self.app.backfill(self.component, "index")
            return
        if head.building_config != self.config:
            generation = max(head.active, head.building or 0) + 1
            if head.building is not None:
                self.lineage.drop_generation(head.building)
            with self.app.db.begin() as conn:
                self.lineage.take(conn, 0)
                self.lineage.set_index(conn, building_generation=generation, building_config=self.config)
            log.info("index %s: building generation %d (%s)", self.name, generation, self.config)
        self.app.backfill(self.component, "index")
        self._rebuilder = threading.Thread(target=self._finish_rebuild, name=f"tidal-rag-{self.name}", daemon=True)
        self._rebuilder.start()

    def _targets(self) -> list[Target]:
        head = self._head()
        targets = []
        for generation, config in ((head.active, head.active_config), (head.building, head.building_config)):
            if generation is None:
                continue
            ours = config == self.config
            name = self.embedder.name if ours else json.loads(config or "{}").get("embedder", "")
            embed = self._embed if ours else None
            targets.append(Target(generation, self.chunking, name, embed))
        return targets

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed(texts)

    def _finish_rebuild(self) -> None:
        try:
            self.flush()
            self.switch_when_complete()
        except Exception:
            log.exception("index %s: rebuild did not finish; it resumes when the index is opened again", self.name)

    def switch_when_complete(self) -> bool:
        """Make the generation being built the one searches use, once it
        covers every source document (indexing what it lacks first)."""
        head = self._head()
        if head.building is None or head.building_config != self.config:
            return False
        target = Target(head.building, self.chunking, self.embedder.name, self._embed)
        audit(self.app.db, self.lineage, self.source, self.text, self.fields, target, repair=True)
        with self.app.db.begin() as conn:
            self.lineage.take(conn, 0)
            now = self.lineage.head(conn)
            if now is None or now.building != head.building:
                return False
            self.lineage.set_index(conn, active_generation=head.building, active_config=self.config,
                                   building_generation=None, building_config=None)  # fmt: skip
        self.lineage.drop_generation(head.active)
        log.info("index %s: generation %d serves now", self.name, head.building)
        return True

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for a rebuild started by this process to switch over."""
        if self._rebuilder is not None:
            self._rebuilder.join(timeout)
            if self._rebuilder.is_alive():
                raise TimeoutError(f"index {self.name!r} is still rebuilding after {timeout} s")

    # -- indexing ---------------------------------------------------------

    def sync(self, doc_id: str, *, force: bool = False) -> SyncResult:
        """Bring ``doc_id``'s chunks up to date now, in every generation
        (what the index's update op does on each change)."""
        total = SyncResult()
        for target in self._targets():
            r = sync_doc(self.app.db, self.lineage, self.source, self.text, self.fields, target, doc_id, force=force)
            total.embedded += r.embedded
            total.reused += r.reused
            total.unchanged += r.unchanged
            total.removed += r.removed
        return total

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every source change made so far is indexed."""
        for shard in range(self.shards):
            self.component(f"shard-{shard}").flush_update("index", timeout=timeout)

    # -- search -----------------------------------------------------------

    def _fresh_mirror(self) -> tuple[Mirror, Head]:
        head = self._head()
        with self._mirror_lock:
            mirror = self._mirror
            if mirror is None or mirror.generation != head.active:
                if mirror is not None:
                    mirror.close()
                mirror = self._mirror = Mirror(self.lineage, head.active, self._ann_threshold)
        mirror.catch_up(head.seq)
        return mirror, head

    def _source_versions(self, doc_ids: set[str]) -> dict[str, str]:
        table = self.app.db.relation(self.source).table
        out: dict[str, str] = {}
        ids = list(doc_ids)
        with self.app.db.connect() as conn:
            for start in range(0, len(ids), 500):
                query = sa.select(table.c.id, table.c.updated_at).where(table.c.id.in_(ids[start : start + 500]))
                out.update((i, version_of(u)) for i, u in conn.execute(query).all())
        return out

    def _search(
        self,
        query: str,
        k: int,
        where: dict[str, Any] | None,
        vector: np.ndarray | None = None,
        ranker: dict[str, Any] | None = None,
    ) -> tuple[list[Hit], np.ndarray, int]:
        mirror, head = self._fresh_mirror()
        if vector is None:
            config = json.loads(head.active_config or "{}")
            embedder = self._embedders.get(config.get("embedder", ""))
            vector = embedder.embed([query])[0] if embedder is not None else None
        hits, x = self.search_vector(mirror, query, vector, k, where, ranker)
        return hits, x, head.active

    def search_vector(
        self,
        mirror: Mirror,
        query: str,
        vector: np.ndarray | None,
        k: int,
        where: dict[str, Any] | None,
        ranker: dict[str, Any] | None = None,
    ) -> tuple[list[Hit], np.ndarray]:
        """The search itself, given the query's vector (benchmarks call it
        to leave the query's embedding out) and the ranker's state; the hits
        and their feature rows."""
        candidates = mirror.search(query, vector, max(ranking.RERANK, 5 * k), where)[: max(ranking.RERANK, 5 * k)]
        priors = dict((ranker or {}).get("priors") or {})
        x = ranking.features(
            np.array([c.score for c in candidates]),
            [c.lexical for c in candidates],
            [c.lexical_rank for c in candidates],
            [c.vector for c in candidates],
            [c.vector_rank for c in candidates],
            [ranking.prior(priors.get(c.slot.doc_id)) for c in candidates],
            RRF_K,
        )
        scores = x @ ranking.weights_of({"ranker": ranker})
        order = np.argsort(-scores, kind="stable")
        # The live check: a chunk is returned only if its document is still
        # stored at the version it was made from, so that once an update or
        # delete of the source commits, its old chunks are never returned,
        # even before the index has caught up with it.
        versions = self._source_versions({c.slot.doc_id for c in candidates})
        hits: list[Hit] = []
        rows: list[int] = []
        for i in order:
            c = candidates[int(i)]
            if versions.get(c.slot.doc_id) != c.slot.doc_version:
                continue
            hits.append(Hit(c.slot.doc_id, c.slot.doc_version, c.slot.chunk_no, c.slot.text, c.score,
                            c.lexical, c.lexical_rank, c.vector, c.vector_rank, c.slot.fields,
                            round(float(scores[i]), 6)))  # fmt: skip
            rows.append(int(i))
            if len(hits) == k:
                break
        return hits, x[rows]

    # -- learning from feedback -------------------------------------------

    def feedback(self, hits: Hits | str, doc_id: str | None = None, *, relevant: bool = True) -> Feedback:
        """Say that ``doc_id`` (the top hit's document when None) was
        relevant, or not, to the search ``hits`` (or its run id): feedback
        ``label="relevant"|"irrelevant"``, ``comment=doc_id`` on the search's
        run, which trains the ranker in the background (:meth:`flush_ranker`)."""
        run_id = hits if isinstance(hits, str) else hits.run_id
        if run_id is None:
            raise ValueError("these hits have no run id; give feedback on hits returned by search()")
        label = "relevant" if relevant else "irrelevant"
        return self.app.feedback(run_id, label=label, comment=doc_id)

    def flush_ranker(self, timeout: float | None = None) -> None:
        """Wait until every feedback given so far has trained the ranker."""
        self._searcher.flush_update(LEARN, timeout=timeout)

    def ranker(self) -> dict[str, Any]:
        """The ranker's state: ``weights`` (by ``features``), the per-document
        feedback counts ``priors`` ({doc_id: [relevant, irrelevant]}) and the
        judgements ``trained`` on."""
        stored = self._searcher.read_state("ranker")
        return dict(stored) if stored else ranking.initial_state()

    def _learn(self, state: Any, props: Any) -> dict[str, Any] | None:
        feedback = props["record"]
        if not isinstance(feedback, Feedback) or feedback.component != self.component.name:
            return None
        if feedback.flow != "search":
            return None
        run = self.app.get(Run, feedback.run_id)
        result = run.result if run is not None and isinstance(run.result, dict) else {}
        hits = list(result.get("hits") or [])
        judged: ranking.Judgement | None = ranking.judgement(feedback.label, feedback.score, feedback.comment, hits)
        if judged is None:
            return None
        x = np.asarray(result.get("features") or [], dtype=np.float64).reshape(-1, len(ranking.FEATURES))
        doc_ids = [str(h["doc_id"]) for h in hits][: len(x)]
        return {"ranker": ranking.learn(state.get("ranker"), doc_ids, x[: len(doc_ids)], judged)}

    def search(
        self, query: str, k: int = 10, where: dict[str, Any] | None = None, *, vector: Sequence[float] | None = None
    ) -> Hits:
        """The ``k`` best chunks for ``query``: BM25 and vector similarity
        fused by reciprocal rank; ``where`` keeps chunks whose source fields
        equal its values; ``vector``, the query's embedding if the caller
        has it already (made by the index's embedder). The search is a run of flow ``search`` of component
        ``rag:<name>`` (``hits.run_id``), its hits the run's result."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        bad = [f for f in (where or {}) if f not in self.fields]
        if bad:
            raise ValueError(f"where= names {bad}, not among the index's fields {list(self.fields)}")
        props: dict[str, Any] = {"query": query, "k": k, "where": where or None}
        if vector is not None:
            props["vector"] = [float(x) for x in vector]
        result = self._searcher.run("search", props)
        hits = [Hit(**h) for h in result["hits"]]
        return Hits(query, hits, self._searcher.last_run_id, result["generation"])

    def answer(self, llm: Model, question: str, k: int = 5, **params: Any) -> Answer:
        """See :func:`tidal.rag.answer`."""
        self._models[llm.name] = llm
        result = self._searcher.run("answer", {"question": question, "k": k, "model": llm.name, "params": params})
        cites = [Citation(**c) for c in result["citations"]]
        return Answer(result["text"], cites, self._searcher.last_run_id)

    def as_tool(self, *, k: int = 5) -> Tool:
        """The index as a tool a model can call: ``query`` in, hits out."""
        parameters = {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for."},
                "k": {"type": "integer", "minimum": 1, "maximum": 50, "description": f"How many (default {k})."},
            },
            "required": ["query"],
        }

        def run(arguments: dict[str, Any]) -> tuple[Any, str | None]:
            hits = self.search(str(arguments["query"]), int(arguments.get("k", k)))
            found = [{"doc_id": h.doc_id, "doc_version": h.doc_version, "chunk_no": h.chunk_no, "text": h.text}
                     for h in hits]  # fmt: skip
            return found, hits.run_id

        return Tool(f"search_{self.name}"[:64], f"Search {self.name} (hybrid: words and meaning).", parameters, run)

    # -- operators --------------------------------------------------------

    def audit(self, repair: bool = False) -> AuditReport:
        """Compare the source rows with the serving generation's chunks
        (missing, stale, orphaned, wrong embedder); ``repair`` re-indexes
        what diverged. The summary is kept for :meth:`stats`."""
        head = self._head()
        if head.active_config != self.config:
            raise RuntimeError(
                f"index {self.name!r} serves a generation built with {head.active_config}, not this process's "
                f"{self.config}; audit it from a process with that configuration, or wait for the rebuild"
            )
        target = Target(head.active, self.chunking, self.embedder.name, self._embed)
        return audit(self.app.db, self.lineage, self.source, self.text, self.fields, target, repair=repair)

    def stats(self) -> IndexStats:
        head = self._head()
        row = self.app.db.get(IndexRow, self.name)
        rows = self.lineage.generation_rows(head.active, ("doc_id",))
        pending = self.app.db.pending_changes(10_000, [self.source.relation()])
        queued = sum(f.pending for f in self.app.freshness([self.component.name]))
        return IndexStats(
            name=self.name,
            generation=head.active,
            building=head.building,
            embedder=json.loads(head.active_config or "{}").get("embedder", ""),
            documents=self.app.db.count(self.source),
            documents_indexed=len({r[0] for r in rows}),
            chunks=len(rows),
            lag=len(pending) + queued,
            last_audit=getattr(row, "last_audit", None),
        )

    def wait_fresh(self, timeout: float = 30.0) -> float:
        """Wait until nothing is left to index; returns the seconds waited."""
        t0 = time.perf_counter()
        self.flush(timeout=timeout)
        return time.perf_counter() - t0

    def __repr__(self) -> str:
        return f"<rag.Index {self.name!r} over {self.source.__name__}>"
