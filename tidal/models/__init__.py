"""Models as a service: one client for hosted, local and stand-in models.

::

    from tidal import models

    llm = models.connect("openai://gpt-4o-mini")                 # key from OPENAI_API_KEY
    llm = models.connect("http://127.0.0.1:8080/v1#gemma-3-270m")  # any compatible server
    r = llm.chat("hi", temperature=0.7, top_p=0.9, max_tokens=64, seed=7, logprobs=True)
    r.text, r.usage, r.cost, r.latency, r.logprob
    emb = models.embedder("local://minilm")

Every call made inside an op is a row of ``model_calls`` in that op's run
(tokens, cost, latency, retries, cache hits, errors): ``app.sql`` over it
answers what the app's models cost. See docs/models.md.
"""

from __future__ import annotations

from typing import Any

from .cache import ResponseCache, SemanticCache
from .client import AsyncChatStream, ChatStream, Model
from .embedders import Embedder, LocalEmbedder, RemoteEmbedder, embedder
from .endpoints import Endpoint
from .errors import (
    ModelCallError,
    ModelConfigError,
    ModelError,
    ModelInputError,
    ModelStreamError,
    StructuredOutputError,
    ToolLoopError,
)
from .prices import ModelInfo, PriceTable, prices
from .results import ChatResult, Choice, ToolCall, Usage
from .tools import Tool, function_tool


def connect(url: str, **options: Any) -> Model:
    """A client for the model ``url`` names (``openai://MODEL``,
    ``http(s)://HOST/v1#MODEL``, ``ollama://MODEL``); ``options`` are
    :class:`Model`'s (app, api_key, timeout, max_retries, rpm, tpm, cache,
    semantic_cache, defaults, ...). Fails at once on an unknown scheme or a
    missing key."""
    return Model(url, **options)


__all__ = [
    # Connecting
    "Endpoint",
    "Model",
    "connect",
    # Answers
    "AsyncChatStream",
    "ChatResult",
    "ChatStream",
    "Choice",
    "ToolCall",
    "Usage",
    # Tools
    "Tool",
    "function_tool",
    # Embeddings
    "Embedder",
    "LocalEmbedder",
    "RemoteEmbedder",
    "embedder",
    # Caching and prices
    "ModelInfo",
    "PriceTable",
    "ResponseCache",
    "SemanticCache",
    "prices",
    # Errors
    "ModelCallError",
    "ModelConfigError",
    "ModelError",
    "ModelInputError",
    "ModelStreamError",
    "StructuredOutputError",
    "ToolLoopError",
]
