"""Request body size limit, enforced on the bytes actually received.

A ``Content-Length`` over the limit is refused before anything is read; a
chunked body (no length) is read up to the limit and refused as soon as it
goes over. Either way the route never runs, so nothing reaches state."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""Largest request body the API accepts by default (1 MiB)."""


class BodyLimit:
    """ASGI middleware answering 413 to HTTP requests whose body exceeds
    ``max_bytes``; the body is buffered (at most ``max_bytes``) and replayed
    to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, declared)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, None)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later reads wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, declared: int | None) -> None:
        got = f"{declared} bytes" if declared is not None else "more"
        body: dict[str, Any] = {
            "error": "payload_too_large",
            "message": f"request body too large: {got}, the limit is {self.max_bytes} bytes; nothing was done",
            "limit": self.max_bytes,
        }
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


_ESCAPE = re.compile(rb"%[0-9A-Fa-f]{2}")


class PathCheck:
    """ASGI middleware answering 400 to a path whose percent-escapes are not
    UTF-8 (``%FF``): the server would read each such byte as U+FFFD, so
    different paths would name the same instance."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or b""
            if _ESCAPE.search(raw):
                try:
                    unquote_to_bytes(raw.split(b"?", 1)[0]).decode("utf-8")
                except UnicodeDecodeError as exc:
                    message = (
                        "the request path is not UTF-8 once its %-escapes are decoded "
                        f"(byte {exc.object[exc.start]:#04x} at {exc.start}); "
                        "names in paths must be UTF-8, percent-encoded; nothing was done"
                    )
                    await _send_json(send, 400, {"error": "invalid_path", "message": message})
                    return
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})
