"""What the retrieval tests share with the processes they start
(tests/rag/proc.py): the source relation, a counting embedder, the app."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import tidal
from tidal.config import Settings
from tidal.models.standin import embedding


class Doc(tidal.Record):
    title: str
    body: str
    lang: str = "en"


class CountingEmbedder:
    """The stand-in's embedding (a hashed bag of words, in this process),
    counting the texts it embeds; ``gate`` (an Event) holds it back."""

    def __init__(self, name: str = "standin-64", dimensions: int = 64) -> None:
        self.name = name
        self.dimensions = dimensions
        self.texts = 0
        self.calls = 0
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(30)
        with self._lock:
            self.calls += 1
            self.texts += len(texts)
        return np.asarray([embedding(t, self.dimensions) for t in texts], dtype=np.float32)


def make_app(tmp_path: Path, name: str = "rag") -> tidal.App:
    return tidal.App(
        name,
        store=f"sqlite:///{tmp_path / (name + '.db')}",
        home=tmp_path / "home",
        settings=Settings(lease_seconds=2.0, sweep_seconds=0.2),  # type: ignore[call-arg]
    )
