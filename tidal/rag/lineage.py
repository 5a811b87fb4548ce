"""The index's lineage, in the app's database: two relations.

``rag_chunks`` (:class:`Chunk`), one row per chunk of a document in a
generation of an index: the document's id and version, the chunk's number,
text and content hash, the embedder that made its vector, the vector's
bytes, the source fields kept for filters, and ``seq``, the index's change
sequence when the row was last written. A chunk that goes (its document was
deleted or now has fewer chunks) stays as a tombstone (``live`` false, no
text or vector) with a new ``seq``, so that every process sees it go.

``rag_indexes`` (:class:`IndexRow`), one row per index: the generation that
serves searches and its configuration (embedder name, chunking), the one
being rebuilt (if any), the change counter, and the last audit.

Writers take the index's row first (``UPDATE rag_indexes SET seq = seq +
n``): that row lock (PostgreSQL) or the write lock (SQLite) serialises the
writers of one index, so sequence numbers commit in order and a reader that
has applied every row up to ``seq`` has missed none below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import Field

from ..relations import Database, Record


class Chunk(Record):
    """A chunk of a source document, as indexed (a row of ``rag_chunks``)."""

    __relation__ = "rag_chunks"

    index_name: str
    generation: int
    doc_id: str
    doc_version: str
    chunk_no: int
    text: str = ""
    content_hash: str = ""
    embedder: str = ""
    vector: bytes | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    seq: int = 0
    live: bool = True


class IndexRow(Record):
    """An index's generations and change counter (a row of ``rag_indexes``)."""

    __relation__ = "rag_indexes"

    active_generation: int = 1
    active_config: str = ""
    building_generation: int | None = None
    building_config: str | None = None
    seq: int = 0
    last_audit: dict[str, Any] | None = None


def chunk_id(index: str, generation: int, doc_id: str, chunk_no: int) -> str:
    return f"{index}/{generation}/{doc_id}/{chunk_no}"


def version_of(updated_at: datetime | None) -> str:
    """A document's version: when it was last written (UTC, ISO 8601, µs)."""
    if updated_at is None:
        return ""
    if updated_at.tzinfo is None:
        updated_at = updated_at.replace(tzinfo=UTC)
    return updated_at.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class Head:
    """The index row as a reader needs it."""

    active: int
    active_config: str
    building: int | None
    building_config: str | None
    seq: int


class Lineage:
    """Reads and writes of one index's rows."""

    def __init__(self, db: Database, index: str) -> None:
        self.db = db
        self.index = index
        db.register(Chunk)
        db.register(IndexRow)
        self.chunks = db.relation(Chunk).table
        self.indexes = db.relation(IndexRow).table
        with db.begin() as conn:
            # Catch-up reads rows by (index, generation, seq); audits and
            # reuse by document and by content hash.
            for name, cols in (
                ("rag_chunks_seq", "index_name, generation, seq"),
                ("rag_chunks_doc", "index_name, generation, doc_id"),
                ("rag_chunks_hash", "index_name, generation, content_hash"),
            ):
                conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON rag_chunks ({cols})"))

    # -- the index row ----------------------------------------------------

    def head(self, conn: sa.Connection | None = None) -> Head | None:
        t = self.indexes
        query = sa.select(
            t.c.active_generation, t.c.active_config, t.c.building_generation, t.c.building_config, t.c.seq
        ).where(t.c.id == self.index)
        if conn is None:
            with self.db.connect() as own:
                row = own.execute(query).first()
        else:
            row = conn.execute(query).first()
        return None if row is None else Head(int(row[0]), row[1], row[2], row[3], int(row[4]))

    def create(self, config: str) -> None:
        """The index row, if there is none yet (generation 1 with ``config``)."""
        now = datetime.now(UTC)
        try:
            with self.db.begin() as conn:
                conn.execute(
                    self.indexes.insert(),
                    {"id": self.index, "created_at": now, "updated_at": now, "active_generation": 1,
                     "active_config": config, "building_generation": None, "building_config": None,
                     "seq": 0, "last_audit": None},
                )  # fmt: skip
        except sa.exc.IntegrityError:
            pass  # another process made it first

    def set_index(self, conn: sa.Connection, **values: Any) -> None:
        values["updated_at"] = datetime.now(UTC)
        conn.execute(self.indexes.update().where(self.indexes.c.id == self.index).values(**values))

    def take(self, conn: sa.Connection, n: int) -> int:
        """Lock the index for this transaction and reserve ``n`` sequence
        numbers; returns the last one before them."""
        t = self.indexes
        conn.execute(t.update().where(t.c.id == self.index).values(seq=t.c.seq + n))
        now = conn.execute(sa.select(t.c.seq).where(t.c.id == self.index)).scalar_one()
        return int(now) - n

    # -- chunks -----------------------------------------------------------

    def live_chunks(self, conn: sa.Connection, generation: int, doc_id: str) -> dict[int, Any]:
        """The live chunk rows of one document, by chunk number."""
        c = self.chunks
        rows = conn.execute(
            sa.select(c).where(
                c.c.index_name == self.index, c.c.generation == generation, c.c.doc_id == doc_id, c.c.live.is_(True)
            )
        ).mappings()
        return {int(r["chunk_no"]): r for r in rows}

    def by_hash(self, conn: sa.Connection, generation: int, hashes: Sequence[str], embedder: str) -> dict[str, Any]:
        """Live rows of the generation with these content hashes (any
        document), made by ``embedder``: vectors to reuse."""
        if not hashes:
            return {}
        c = self.chunks
        found: dict[str, Any] = {}
        for start in range(0, len(hashes), 500):
            rows = conn.execute(
                sa.select(c.c.content_hash, c.c.text, c.c.vector).where(
                    c.c.index_name == self.index,
                    c.c.generation == generation,
                    c.c.content_hash.in_(list(hashes[start : start + 500])),
                    c.c.embedder == embedder,
                    c.c.live.is_(True),
                )
            ).mappings()
            for r in rows:
                found.setdefault(r["content_hash"], r)
        return found

    def write(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Write chunk rows (live ones or tombstones), each with a fresh
        ``seq`` in order, in the caller's transaction."""
        if not rows:
            return
        first = self.take(conn, len(rows))
        now = datetime.now(UTC)
        c = self.chunks
        ids = [r["id"] for r in rows]
        created = dict(conn.execute(sa.select(c.c.id, c.c.created_at).where(c.c.id.in_(ids))).all())
        conn.execute(c.delete().where(c.c.id.in_(ids)))
        full = []
        for i, r in enumerate(rows, start=1):
            full.append({**r, "seq": first + i, "created_at": created.get(r["id"]) or now, "updated_at": now})
        conn.execute(c.insert(), full)

    def changes(self, generation: int, after: int, limit: int = 5000) -> list[Any]:
        """Rows of a generation written after ``after``, in ``seq`` order."""
        c = self.chunks
        query = (
            sa.select(c.c.id, c.c.doc_id, c.c.chunk_no, c.c.doc_version, c.c.text, c.c.vector, c.c.fields,
                      c.c.seq, c.c.live)
            .where(c.c.index_name == self.index, c.c.generation == generation, c.c.seq > after)
            .order_by(c.c.seq)
            .limit(limit)
        )  # fmt: skip
        with self.db.connect() as conn:
            return list(conn.execute(query).all())

    def generation_rows(self, generation: int, columns: Iterable[str], live_only: bool = True) -> list[Any]:
        c = self.chunks
        query = sa.select(*(c.c[name] for name in columns)).where(
            c.c.index_name == self.index, c.c.generation == generation
        )
        if live_only:
            query = query.where(c.c.live.is_(True))
        with self.db.connect() as conn:
            return list(conn.execute(query).all())

    def drop_generation(self, generation: int) -> int:
        c = self.chunks
        with self.db.begin() as conn:
            result = conn.execute(c.delete().where(c.c.index_name == self.index, c.c.generation == generation))
        return int(result.rowcount or 0)
