"""Comparing an index's chunks with its source rows, and repairing them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..relations import Database, Record
from .chunking import content_hash
from .lineage import Lineage, version_of
from .sync import Target, sync_doc


@dataclass
class AuditReport:
    """What an audit found, by document id: ``missing`` (a source row with
    no chunks), ``stale`` (chunks of another version, or whose texts or
    hashes do not match the source's text now, or with chunks missing),
    ``orphaned`` (chunks of a document no longer in the source) and
    ``wrong_embedder`` (chunks made by another embedder, or with vectors of
    the wrong size). ``repaired`` when ``audit(repair=True)`` fixed them."""

    index: str
    generation: int
    documents: int = 0
    chunks: int = 0
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    wrong_embedder: list[str] = field(default_factory=list)
    repaired: bool = False
    embedded: int = 0
    at: str = ""

    @property
    def clean(self) -> bool:
        """Nothing to repair."""
        return not (self.missing or self.stale or self.orphaned or self.wrong_embedder)

    def counts(self) -> dict[str, int]:
        return {"missing": len(self.missing), "stale": len(self.stale), "orphaned": len(self.orphaned),
                "wrong_embedder": len(self.wrong_embedder)}  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean, "counts": self.counts()}

    def summary(self) -> dict[str, Any]:
        """The report without its id lists (what ``stats`` keeps)."""
        return {"at": self.at, "generation": self.generation, "documents": self.documents, "chunks": self.chunks,
                "clean": self.clean, "repaired": self.repaired, **self.counts()}  # fmt: skip


def audit(
    db: Database,
    lineage: Lineage,
    source: type[Record],
    text_of: Callable[[Any], str],
    fields: Sequence[str],
    target: Target,
    *,
    repair: bool = False,
) -> AuditReport:
    """Check every source row against the generation's live chunks; with
    ``repair``, re-index what diverged (see :class:`AuditReport`)."""
    report = AuditReport(lineage.index, target.generation, at=datetime.now(UTC).isoformat())
    rows = lineage.generation_rows(
        target.generation, ("doc_id", "chunk_no", "doc_version", "content_hash", "text", "embedder", "vector")
    )
    by_doc: dict[str, list[Any]] = {}
    for row in rows:
        by_doc.setdefault(row[0], []).append(row)
    report.chunks = len(rows)
    # The vectors' size: the most common one (no embedding is spent on it).
    sizes = Counter(len(r[6]) for r in rows if r[6] is not None)
    dim = sizes.most_common(1)[0][0] // 4 if sizes else None
    seen: set[str] = set()
    for record in db.query(source, order_by="id"):
        report.documents += 1
        seen.add(record.id)
        chunks = sorted(by_doc.get(record.id, []), key=lambda r: r[1])
        if not chunks:
            report.missing.append(record.id)
            continue
        if any(r[5] != target.embedder_name or r[6] is None or (dim and len(r[6]) != 4 * dim) for r in chunks):
            report.wrong_embedder.append(record.id)
            continue
        expected = [content_hash(t) for t in target.chunking.split(text_of(record))]
        version = version_of(record.updated_at)
        if (
            [r[1] for r in chunks] != list(range(len(expected)))
            or [r[3] for r in chunks] != expected
            or any(content_hash(r[4]) != r[3] or r[2] != version for r in chunks)
        ):
            report.stale.append(record.id)
    report.orphaned = sorted(set(by_doc) - seen)
    if repair and not report.clean:
        for doc_id in [*report.missing, *report.stale, *report.orphaned]:
            report.embedded += sync_doc(db, lineage, source, text_of, fields, target, doc_id).embedded
        for doc_id in report.wrong_embedder:
            report.embedded += sync_doc(db, lineage, source, text_of, fields, target, doc_id, force=True).embedded
        report.repaired = True
    with db.begin() as conn:
        lineage.set_index(conn, last_audit=report.summary())
    return report
