"""Model URLs: which endpoint, which model, which key.

========================================  =========================================
``openai://gpt-4o-mini``                  OpenAI's API; key from ``OPENAI_API_KEY``
``http://127.0.0.1:8080/v1#gemma-3-270m`` any OpenAI-compatible server (vLLM,
                                          llama.cpp, Ollama, ``tidal models serve``);
                                          the model after ``#``
``https://host/v1?key_env=MY_KEY#model``  a key read from the ``MY_KEY`` variable
``ollama://llama3.2``                     a local Ollama (``127.0.0.1:11434/v1``)
========================================  =========================================

A key can also be given to ``connect(api_key=...)``. Keys never appear in
``Endpoint.base_url``, the runs log or errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .errors import ModelConfigError

OPENAI_BASE = "https://api.openai.com/v1"
OLLAMA_BASE = "http://127.0.0.1:11434/v1"
SCHEMES = ("openai", "ollama", "http", "https")
LOCAL_KEY = "not-needed"
"""The key sent to servers that need none (the openai client wants one)."""


@dataclass(frozen=True)
class Endpoint:
    """Where a model is served and how to reach it."""

    url: str
    """The URL as given (keys removed)."""
    base_url: str
    """The OpenAI-style API root (``.../v1``)."""
    model: str
    api_key: str = field(repr=False)

    @property
    def label(self) -> str:
        """``model@base_url``, for logs and errors."""
        return f"{self.model}@{self.base_url}"


def parse(url: str, *, api_key: str | None = None, model: str | None = None) -> Endpoint:
    """The endpoint a model URL names; ModelConfigError when it cannot work
    (unknown scheme, no model, a hosted API without its key)."""
    if not isinstance(url, str) or not url:
        raise ModelConfigError(f"a model URL must be a non-empty string, got {url!r}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ModelConfigError(
            f"unknown model URL scheme {parts.scheme!r} in {url!r}; use one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
            + " (local://minilm is an embedder: models.embedder)"
        )
    query = parse_qs(parts.query)
    key_env = query.get("key_env", [None])[0]
    if scheme in ("openai", "ollama"):
        name = model or (parts.netloc + parts.path).strip("/") or parts.fragment
        base = OPENAI_BASE if scheme == "openai" else OLLAMA_BASE
        key_env = key_env or ("OPENAI_API_KEY" if scheme == "openai" else None)
    else:
        name = model or parts.fragment
        rest = "&".join(f"{k}={v}" for k, vs in query.items() if k != "key_env" for v in vs)
        base = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), rest, ""))
        if not parts.netloc:
            raise ModelConfigError(f"model URL {url!r} has no host")
    if not name:
        raise ModelConfigError(f"model URL {url!r} names no model: add it after '#' (e.g. {base}#my-model)")
    key = api_key
    if key is None and key_env:
        key = os.environ.get(key_env)
        if not key and scheme == "openai":
            raise ModelConfigError(f"model {url!r} needs an API key: set {key_env} or pass api_key= (none was found)")
    shown = urlunsplit((parts.scheme, parts.netloc, parts.path, "", parts.fragment))
    return Endpoint(url=shown, base_url=base, model=name, api_key=key or LOCAL_KEY)
