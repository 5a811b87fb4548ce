"""Cutting a document's text into chunks, and naming a chunk's content.

Chunks are made of paragraphs (split on blank lines), packed greedily up to
``chunk_chars``; a paragraph longer than that is cut at whitespace. A
paragraph whose hash falls on a boundary also starts a new chunk once the
current one holds a quarter of ``chunk_chars``, so that boundaries depend on
the content near them: an edit early in a document changes the chunks around
it and, after the next such paragraph, the same chunks follow as before
(what keeps re-embedding small after an edit).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass

_PARAGRAPHS = re.compile(r"\n\s*\n")

BOUNDARY_EVERY = 4
"""About one paragraph in this many may start a chunk of its own."""


def content_hash(text: str) -> str:
    """The chunk's content hash (SHA-256 of its UTF-8 text, hex, 32 chars)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class Chunking:
    """How text is cut: ``chunk_chars`` at most per chunk, the last
    ``overlap`` characters of a chunk repeated at the start of the next."""

    chunk_chars: int = 1000
    overlap: int = 0

    def __post_init__(self) -> None:
        if self.chunk_chars < 50:
            raise ValueError(f"chunk_chars must be at least 50, got {self.chunk_chars}")
        if not 0 <= self.overlap < self.chunk_chars // 2:
            raise ValueError(f"overlap must be in [0, chunk_chars / 2), got {self.overlap}")

    def describe(self) -> str:
        return f"chars={self.chunk_chars},overlap={self.overlap}"

    def split(self, text: str) -> list[str]:
        """The chunks of ``text``: at least one (an empty text is one empty
        chunk, so that every document has a row in the index)."""
        limit = self.chunk_chars - self.overlap
        pieces: list[str] = []
        for paragraph in _PARAGRAPHS.split(text.strip()):
            paragraph = paragraph.strip("\n").rstrip()  # indentation kept (code)
            while len(paragraph) > limit:
                cut = paragraph.rfind(" ", limit // 2, limit)
                cut = cut if cut > 0 else limit
                pieces.append(paragraph[:cut].rstrip())
                paragraph = paragraph[cut:].strip()
            if paragraph.strip():
                pieces.append(paragraph)
        chunks: list[str] = []
        current = ""
        for piece in pieces:
            starts = (
                len(current) >= limit // 4 and zlib.crc32(piece.encode("utf-8", "surrogatepass")) % BOUNDARY_EVERY == 0
            )
            if current and (len(current) + 2 + len(piece) > limit or starts):
                chunks.append(current)
                current = piece
            else:
                current = f"{current}\n\n{piece}" if current else piece
        chunks.append(current)
        if self.overlap:
            chunks = [chunks[0]] + [chunks[i - 1][-self.overlap :] + " " + chunks[i] for i in range(1, len(chunks))]
        return chunks
