"""BM25 over a process's copy of the chunks: SQLite FTS5 in memory.

Every process keeps its own FTS5 table, filled and kept up to date from the
chunk table's change sequence, whatever database holds the relations
(SQLite or PostgreSQL): the ranking is the same everywhere, and needs
nothing from the server.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterable

_TOKEN = re.compile(r"\w+", re.UNICODE)

COMMON_FRACTION = 0.05
"""A query word found in more than this fraction of the chunks is left out
of the FTS5 query: FTS5 scores every row that matches before ``LIMIT``, so
one common word makes a search cost the whole table, while its BM25 weight
(IDF) is small anyway."""
PRUNE_FROM = 2_000
"""Chunks from which common words are left out (below, every row is cheap)."""


def words_of(text: str) -> list[str]:
    return list(dict.fromkeys(w.lower() for w in _TOKEN.findall(text)))


def match_query(words: Iterable[str]) -> str:
    """Words as an FTS5 OR-query (each word quoted: no operators from the
    user's text)."""
    return " OR ".join(f'"{w}"' for w in words)


class Lexical:
    """Chunk texts by slot, searched with BM25 (FTS5's ``bm25()``)."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.conn.execute("CREATE VIRTUAL TABLE chunks USING fts5(text, tokenize='porter unicode61')")
        # Chunks per (lower-cased, unstemmed) word, to leave common words out
        # of queries; a stemmed variant may be commoner, which costs only time.
        self.df: Counter[str] = Counter()
        self.rows = 0

    def _count(self, text: str, sign: int) -> None:
        words = set(_TOKEN.findall(text.lower()))
        if sign > 0:
            self.df.update(words)
        else:
            self.df.subtract(words)
        self.rows += sign

    def put_many(self, items: list[tuple[int, str]]) -> None:
        """Add chunks (slots not in the table: :meth:`remove` replaced ones first)."""
        self.conn.execute("BEGIN")
        self.conn.executemany("INSERT INTO chunks(rowid, text) VALUES (?, ?)", items)
        self.conn.execute("COMMIT")
        for _, text in items:
            self._count(text, 1)

    def remove(self, slot: int, text: str) -> None:
        self.conn.execute("DELETE FROM chunks WHERE rowid = ?", (slot,))
        self._count(text, -1)

    def query_words(self, text: str) -> list[str]:
        """The query's words that are searched: all of them in a small table,
        else those in at most ``COMMON_FRACTION`` of the chunks."""
        words = words_of(text)
        if self.rows < PRUNE_FROM:
            return words
        limit = COMMON_FRACTION * self.rows
        return [w for w in words if self.df.get(w, 0) <= limit]

    def search(self, text: str, n: int) -> list[tuple[int, float]]:
        """The best ``n`` slots with their BM25 scores (higher is better)."""
        query = match_query(self.query_words(text))
        if not query:
            return []
        rows = self.conn.execute(
            "SELECT rowid, bm25(chunks) FROM chunks WHERE chunks MATCH ? ORDER BY rank LIMIT ?", (query, n)
        ).fetchall()
        return [(int(slot), -float(score)) for slot, score in rows]

    def close(self) -> None:
        self.conn.close()
