"""Bringing one document's chunks in a generation up to date with its
source row: the work of the index's update op, of a rebuild and of a repair.

It reads the document as it is now (not as the change that fired it saw
it), so that running it twice, late or out of order converges on the same
rows. Chunks whose text and embedder match a live row (of this document or
any other in the generation) reuse that row's vector; only the rest are
embedded. The write re-reads the document's version under the index's lock
and starts over if the document changed meanwhile, so an older version can
never overwrite a newer one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from ..relations import Database, Record
from .chunking import Chunking, content_hash
from .lineage import Lineage, chunk_id, version_of

ATTEMPTS = 5


@dataclass
class Target:
    """One generation to write into: how its chunks are made. A generation
    whose embedder this process does not have (``embed`` None) gets only
    removals: chunks of deleted or changed documents become tombstones."""

    generation: int
    chunking: Chunking
    embedder_name: str
    embed: Callable[[list[str]], np.ndarray] | None


@dataclass
class SyncResult:
    embedded: int = 0
    reused: int = 0
    unchanged: int = 0
    removed: int = 0


def _source_version(conn: sa.Connection, table: sa.Table, doc_id: str) -> str | None:
    row = conn.execute(sa.select(table.c.updated_at).where(table.c.id == doc_id)).first()
    return None if row is None else version_of(row[0])


def field_values(record: Record, fields: Sequence[str]) -> dict[str, Any]:
    dumped = record.model_dump(mode="json", include=set(fields))
    return {f: dumped.get(f) for f in fields}


def sync_doc(
    db: Database,
    lineage: Lineage,
    source: type[Record],
    text_of: Callable[[Any], str],
    fields: Sequence[str],
    target: Target,
    doc_id: str,
    *,
    force: bool = False,
) -> SyncResult:
    """Make ``target``'s chunks of ``doc_id`` match the source row (none if
    it is gone). ``force`` re-embeds every chunk (a repair of a bad vector)."""
    table = db.relation(source).table
    for _ in range(ATTEMPTS):
        record = db.get(source, doc_id)
        version = None if record is None else version_of(record.updated_at)
        texts: list[str] = []
        values: dict[str, Any] = {}
        if record is not None and target.embed is not None:
            texts = target.chunking.split(text_of(record))
            values = field_values(record, fields)
        hashes = [content_hash(t) for t in texts]
        with db.connect() as conn:
            existing = lineage.live_chunks(conn, target.generation, doc_id)
            reusable = {} if force else lineage.by_hash(conn, target.generation, hashes, target.embedder_name)
        # Only removals in a generation of another embedder: its chunks stay
        # while they are of the document's version.
        if target.embed is None and record is not None and all(r["doc_version"] == version for r in existing.values()):
            return SyncResult(unchanged=len(existing))
        vectors: dict[str, bytes] = {}
        for h, t in zip(hashes, texts, strict=True):
            row = reusable.get(h)
            if row is not None and row["text"] == t and row["vector"] is not None:
                vectors[h] = bytes(row["vector"])
        todo = list(dict.fromkeys(h for h in hashes if h not in vectors))
        result = SyncResult()
        if todo:
            assert target.embed is not None
            first = {h: t for h, t in zip(hashes, texts, strict=True)}
            made = np.asarray(target.embed([first[h] for h in todo]), dtype=np.float32)
            for h, v in zip(todo, made, strict=True):
                vectors[h] = v.tobytes()
            result.embedded = len(todo)
        with db.begin() as conn:
            lineage.take(conn, 0)  # the index's lock, before anything is read
            if _source_version(conn, table, doc_id) != version:
                continue  # the document changed while we embedded: start over
            current = lineage.live_chunks(conn, target.generation, doc_id)
            rows: list[dict[str, Any]] = []
            for no, (t, h) in enumerate(zip(texts, hashes, strict=True)):
                old = current.get(no)
                if (
                    not force
                    and old is not None
                    and old["content_hash"] == h
                    and old["text"] == t
                    and old["doc_version"] == version
                    and old["embedder"] == target.embedder_name
                    and dict(old["fields"] or {}) == values
                ):
                    result.unchanged += 1
                    continue
                if h not in todo:
                    result.reused += 1
                rows.append({
                    "id": chunk_id(lineage.index, target.generation, doc_id, no), "index_name": lineage.index,
                    "generation": target.generation, "doc_id": doc_id, "doc_version": version or "",
                    "chunk_no": no, "text": t, "content_hash": h, "embedder": target.embedder_name,
                    "vector": vectors[h], "fields": values, "live": True,
                })  # fmt: skip
            for no in sorted(set(current) - set(range(len(texts)))):
                rows.append(tombstone(lineage, target.generation, doc_id, no, current[no]["doc_version"]))
                result.removed += 1
            lineage.write(conn, rows)
        return result
    raise RuntimeError(f"document {doc_id!r} kept changing while it was indexed ({ATTEMPTS} attempts); try again")


def tombstone(lineage: Lineage, generation: int, doc_id: str, chunk_no: int, version: str) -> dict[str, Any]:
    return {"id": chunk_id(lineage.index, generation, doc_id, chunk_no), "index_name": lineage.index,
            "generation": generation, "doc_id": doc_id, "doc_version": version, "chunk_no": chunk_no, "text": "",
            "content_hash": "", "embedder": "", "vector": None, "fields": {}, "live": False}  # fmt: skip
