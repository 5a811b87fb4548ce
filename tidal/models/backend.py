"""What a model served by ``tidal models serve`` must do: answer OpenAI-shaped
requests (as JSON dicts) with OpenAI-shaped responses.

:mod:`tidal.models.http` puts any :class:`Backend` behind the OpenAI HTTP API
(``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/models``), so that an app talks to a local model or to the test
stand-in exactly as to a hosted one. The request dicts are the JSON bodies
the ``openai`` client sends; the responses are the JSON bodies it expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol


class BackendError(Exception):
    """A request the backend refuses: becomes an OpenAI-style error body
    with this HTTP status (400 for a bad request, 404 for an unknown model)."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param


class Backend(Protocol):
    """A model (or models) behind the OpenAI HTTP API."""

    def models(self) -> list[str]:
        """The model names it serves (``/v1/models``)."""
        ...

    def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        """A ``chat.completion`` object for a non-streamed chat request."""
        ...

    def chat_stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """``chat.completion.chunk`` objects for a streamed chat request
        (the last one carries ``usage`` when ``stream_options.include_usage``)."""
        ...

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """A ``text_completion`` object for a (legacy) completions request."""
        ...

    def embed(self, request: dict[str, Any]) -> dict[str, Any]:
        """A ``list`` of ``embedding`` objects for an embeddings request."""
        ...
