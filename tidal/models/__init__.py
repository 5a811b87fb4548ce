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

from typing import TYPE_CHECKING

from .. import lazy

if TYPE_CHECKING:
    from .cache import ResponseCache, SemanticCache
    from .client import AsyncChatStream, ChatStream, Model, connect
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
    from .pricing import ModelInfo, PriceTable, prices
    from .results import ChatResult, Choice, ToolCall, Usage
    from .tools import Tool, function_tool

# The package loads its modules on first use of a name (the openai client,
# numpy and pydantic cost ~400 ms), so that the CLI and the servers can hold
# it: the same mechanism as tidal.relations.
_MODULES = {
    "ResponseCache": ".cache",
    "SemanticCache": ".cache",
    "AsyncChatStream": ".client",
    "ChatStream": ".client",
    "Model": ".client",
    "connect": ".client",
    "Embedder": ".embedders",
    "LocalEmbedder": ".embedders",
    "RemoteEmbedder": ".embedders",
    "embedder": ".embedders",
    "Endpoint": ".endpoints",
    "ModelCallError": ".errors",
    "ModelConfigError": ".errors",
    "ModelError": ".errors",
    "ModelInputError": ".errors",
    "ModelStreamError": ".errors",
    "StructuredOutputError": ".errors",
    "ToolLoopError": ".errors",
    "ModelInfo": ".pricing",
    "PriceTable": ".pricing",
    "prices": ".pricing",
    "ChatResult": ".results",
    "Choice": ".results",
    "ToolCall": ".results",
    "Usage": ".results",
    "Tool": ".tools",
    "function_tool": ".tools",
}


__getattr__ = lazy.attributes(__name__, _MODULES, globals())

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
