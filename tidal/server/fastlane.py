"""The fast lane: flow calls answered without FastAPI's router and
dependency solving, which cost several times the run itself.

A pure ASGI middleware, innermost (inside the path and body-size checks).
It takes only the plain case of ``POST /components/{c}/instances/{i}/flows/{f}``
of a flow that has a route of its own: a JSON body that parses (orjson) and
validates against the flow's request model, an instance id the route
accepts, and either no auth or an API key verified moments ago (see
:meth:`tidal.server.keys.KeyStore.cached`). Anything else (another path or
method, a body that does not parse or validate, no or unknown credentials)
goes on to FastAPI untouched, with its body replayed, so every refusal keeps
the shape FastAPI and Tidal's handlers give it. What the lane runs is the
route's own code (:func:`tidal.server.routes.flows.run_flow`), and its errors
are answered by the app's own exception handlers."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ValidationError
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .context import INSTANCE_PATTERN, SAFE_NAME, runnable_flows
from .models import flow_request_model
from .routes.flows import run_flow
from .scopes import OPEN

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..component import Component
    from .context import ServerContext
    from .scopes import Principal

_INSTANCE = re.compile(INSTANCE_PATTERN)


def _json_content(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            kind: bytes = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json"
    return False


class FastLane:
    """See the module. ``api`` is the FastAPI app whose exception handlers
    answer the lane's errors; ``ctx`` its ServerContext."""

    def __init__(self, app: ASGIApp, ctx: ServerContext, api: FastAPI) -> None:
        self.app = app
        self.ctx = ctx
        self.api = api
        self.flows: dict[tuple[str, str], tuple[Component, type[BaseModel]]] = {}
        taken: set[str] = set()
        for name, comp in sorted(ctx.app.components.items()):
            if SAFE_NAME.match(name):
                for flow in runnable_flows(comp):
                    if SAFE_NAME.match(flow):
                        self.flows[(name, flow)] = (comp, flow_request_model(comp, flow, taken))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        parts = get_route_path(scope).split("/")
        # ['', 'components', c, 'instances', i, 'flows', f]
        if len(parts) != 7 or parts[1] != "components" or parts[3] != "instances" or parts[5] != "flows":
            await self.app(scope, receive, send)
            return
        found = self.flows.get((parts[2], parts[6]))
        if found is None or not _INSTANCE.match(parts[4]) or not _json_content(scope):
            await self.app(scope, receive, send)
            return
        principal = self._principal(scope)
        # the body: read whole (BodyLimit, outside, has bounded it)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        body = None
        if principal is not None and raw:
            try:
                body = found[1].model_validate(orjson.loads(raw))
            except (orjson.JSONDecodeError, ValidationError):
                body = None
        if body is None:
            await self.app(scope, _replay(raw, receive), send)
            return
        comp, _ = found
        instance, flow = parts[4], parts[6]
        try:
            response = await run_flow(self.ctx, comp, instance, flow, body, principal)  # type: ignore[arg-type]
        except Exception as exc:
            cls, handler = self._handler(exc)
            if handler is None:  # pragma: no cover - the app has a handler for Exception
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            if cls is Exception:
                raise  # as Starlette's ServerErrorMiddleware does: the server logs it too
            return
        await response(scope, receive, send)

    def _principal(self, scope: Scope) -> Principal | None:
        """The caller, if known without a database read (else None)."""
        auth = self.ctx.auth
        if auth is None:
            return OPEN
        bearer: str | None = None
        api_key: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization" and bearer is None:  # the first, as Starlette's headers.get
                scheme, credentials = get_authorization_scheme_param(value.decode("latin-1"))
                bearer = credentials if scheme.lower() == "bearer" and credentials else ""
            elif name == b"x-api-key" and api_key is None:
                api_key = value.decode("latin-1")
        return auth.cached(bearer or None, api_key or None)

    def _handler(self, exc: Exception) -> tuple[type | None, Any]:
        """The app's handler for ``exc``, as Starlette picks it (nearest class first)."""
        handlers = self.api.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                return cls, handlers[cls]
        return None, None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
