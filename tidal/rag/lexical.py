"""BM25 over a process's copy of the chunks: SQLite FTS5 in memory.

Every process keeps its own FTS5 table, filled and kept up to date from the
chunk table's change sequence, whatever database holds the relations
(SQLite or PostgreSQL): the ranking is the same everywhere, and needs
nothing from the server.
"""

from __future__ import annotations

import re
import sqlite3

_TOKEN = re.compile(r"\w+", re.UNICODE)


def match_query(text: str) -> str:
    """A query's words as an FTS5 OR-query (each word quoted: no operators
    from the user's text)."""
    words = dict.fromkeys(w.lower() for w in _TOKEN.findall(text))
    return " OR ".join(f'"{w}"' for w in words)


class Lexical:
    """Chunk texts by slot, searched with BM25 (FTS5's ``bm25()``)."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.conn.execute("CREATE VIRTUAL TABLE chunks USING fts5(text, tokenize='porter unicode61')")

    def put(self, slot: int, text: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO chunks(rowid, text) VALUES (?, ?)", (slot, text))

    def put_many(self, items: list[tuple[int, str]]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany("INSERT OR REPLACE INTO chunks(rowid, text) VALUES (?, ?)", items)
        self.conn.execute("COMMIT")

    def remove(self, slot: int) -> None:
        self.conn.execute("DELETE FROM chunks WHERE rowid = ?", (slot,))

    def search(self, text: str, n: int) -> list[tuple[int, float]]:
        """The best ``n`` slots with their BM25 scores (higher is better)."""
        query = match_query(text)
        if not query:
            return []
        rows = self.conn.execute(
            "SELECT rowid, bm25(chunks) FROM chunks WHERE chunks MATCH ? ORDER BY rank LIMIT ?", (query, n)
        ).fetchall()
        return [(int(slot), -float(score)) for slot, score in rows]

    def close(self) -> None:
        self.conn.close()
