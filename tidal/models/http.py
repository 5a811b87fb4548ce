"""Any :class:`~tidal.models.backend.Backend` behind the OpenAI HTTP API.

:func:`build_app` serves ``POST /v1/chat/completions`` (JSON, or server-sent
events with ``"stream": true``), ``POST /v1/completions``,
``POST /v1/embeddings`` and ``GET /v1/models``; refusals are OpenAI error
bodies ``{"error": {"message", "type", "param", "code"}}``. Backend calls
block, so they run on worker threads, and streams are iterated there too.

With ``control`` (the default for the stand-in) the app also has the routes
tests steer it with::

    GET|POST|DELETE /_stand-in/faults     the faults injected (tidal.models.faults); GET shows hits
    GET|POST|DELETE /_stand-in/script     the stand-in's script (tidal.models.standin)
    GET|DELETE      /_stand-in/requests   the last requests received: method, path, headers
                                          (without Authorization), body; ?limit=N

:func:`serve` runs the app with uvicorn (``tidal models serve``);
:func:`serving` runs it on a thread, on a free loopback port, for tests.
FastAPI and uvicorn load when an app is built, so that the CLI starts fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError
from .backend import Backend, BackendError
from .faults import Fault, FaultError, Faults, parse_faults
from .standin import ScriptError, StandIn, parse_script

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

LOCAL_BACKENDS = {"gemma-3-270m": "tidal.models.local", "minilm": "tidal.models.local"}
"""Local models ``tidal models serve --local NAME`` knows: NAME -> the module
whose ``load(name) -> Backend`` loads it (imported only when asked for)."""

REQUEST_LOG_SIZE = 200
"""How many requests ``GET /_stand-in/requests`` remembers."""

CONTROL = "/_stand-in"

HIDDEN_HEADERS = frozenset({"authorization", "api-key"})
"""Left out of the request log: credentials."""

ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 429: "requests"}
"""OpenAI's error ``type`` by status; other 4xx are ``invalid_request_error``, 5xx ``server_error``."""

STARTUP_TIMEOUT = 10.0


def local_backend(name: str) -> Backend:
    """The local model ``name`` of :data:`LOCAL_BACKENDS`, loaded by its module's
    ``backend(name)``; :class:`~tidal.exceptions.ConfigError` when the name is
    unknown or its module (or a dependency of it) is not installed."""
    module_name = LOCAL_BACKENDS.get(name)
    if module_name is None:
        raise ConfigError(f"unknown local model {name!r}; known: {', '.join(sorted(LOCAL_BACKENDS))}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(f"local model {name!r} needs {module_name}, which this install of Tidal lacks") from exc
        raise ConfigError(
            f"local model {name!r} needs the Python package {exc.name!r}: install it (pip install {exc.name})"
        ) from exc
    backend: Backend = module.backend(name)
    return backend


def base_url(host: str, port: int) -> str:
    """``http://host:port/v1``, with brackets around an IPv6 address."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/v1"


# --------------------------------------------------------------------------- responses


class _Dropped(Exception):
    """Raised inside a response body by a ``drop`` fault: the connection is cut."""


class _CutConnections:
    """ASGI middleware: a response a ``drop`` fault cut short ends here, so
    the server closes the connection without finishing the response (the
    client sees a broken response, not a complete one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except* _Dropped:
            pass


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(body, status_code=status, headers=headers)


def _error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return _json(body, status, headers)


def _refusal(exc: BackendError) -> Response:
    return _error(exc.status, str(exc), code=exc.code, param=exc.param)


def _events(chunks: AsyncIterator[bytes]) -> Response:
    from starlette.responses import StreamingResponse

    return StreamingResponse(chunks, media_type="text/event-stream", headers={"cache-control": "no-cache"})


def _cut() -> Response:
    """A response whose connection is closed right after the status line and headers."""
    from starlette.responses import StreamingResponse

    async def nothing() -> AsyncIterator[bytes]:
        raise _Dropped
        yield b""  # pragma: no cover - makes this an async generator

    return StreamingResponse(nothing(), media_type="application/json")


# --------------------------------------------------------------------------- the service


class _Service:
    """What the routes share: the backend, the key, the faults and the request log."""

    def __init__(self, backend: Backend, api_key: str | None, faults: Faults, log_size: int) -> None:
        self.backend = backend
        self.api_key = api_key
        self.faults = faults
        self.log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self.log_lock = threading.Lock()

    def refused(self, request: Request) -> Response | None:
        """A 401 when a key is required and the request lacks it."""
        if self.api_key is None:
            return None
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            return None
        shown = "none" if not given else "one that does not match"
        return _error(
            401,
            f"Incorrect API key provided ({shown}). Send it as 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
        )

    async def body(self, request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
            self.record(request, raw.decode(errors="replace"))
            return None, _error(400, "We could not parse the JSON body of your request.", code="invalid_json")
        self.record(request, body)
        if not isinstance(body, dict):
            return None, _error(400, "The request body must be a JSON object.", code="invalid_json")
        return body, None

    def record(self, request: Request, body: Any) -> None:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HIDDEN_HEADERS}
        entry = {"method": request.method, "path": request.url.path, "headers": headers, "body": body}
        with self.log_lock:
            self.log.append({**entry, "time": time.time()})

    async def call(self, request: Request, verb: str) -> Response:
        """A model endpoint: parse, check the key, inject a fault, ask the backend."""
        body, malformed = await self.body(request)  # recorded even when refused: tests see what was sent
        refusal = self.refused(request) or malformed
        if refusal is not None or body is None:
            return refusal or _error(400, "The request body must be a JSON object.")
        fault = self.faults.take(body.get("model"))
        if fault is not None and fault.kind in ("429", "500"):
            return _fault_response(fault)
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        dropping = fault is not None and fault.kind == "drop"
        from starlette.concurrency import run_in_threadpool

        try:
            if verb == "chat" and body.get("stream"):
                return await self.stream(body, fault)
            if body.get("stream"):
                raise BackendError(400, "'stream' is only supported on /v1/chat/completions.", param="stream")
            if dropping:
                return _cut()
            method = {"chat": self.backend.chat, "complete": self.backend.complete, "embed": self.backend.embed}
            return _json(await run_in_threadpool(method[verb], body))
        except BackendError as exc:
            return _refusal(exc)
        except Exception as exc:  # a bug in the backend: still an OpenAI error body, and logged
            logger.exception("the model backend failed on %s", request.url.path)
            return _error(500, f"The model backend failed: {type(exc).__name__}: {exc}")

    async def stream(self, body: dict[str, Any], fault: Fault | None) -> Response:
        """Server-sent events of the backend's chunks, then ``[DONE]``. The
        first chunk is asked for before answering, so a refused request gets
        its error status rather than a broken stream."""
        from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

        chunks = await run_in_threadpool(self.backend.chat_stream, body)
        end = object()
        first = await run_in_threadpool(next, chunks, end)
        delay = fault.delay if fault is not None and fault.kind == "slow" else 0.0
        drop_after = fault.after_tokens if fault is not None and fault.kind == "drop" else None

        async def events() -> AsyncIterator[bytes]:
            sent = 0
            rest = iterate_in_threadpool(chunks)
            chunk: Any = first
            try:
                while chunk is not end:
                    if drop_after is not None and sent >= drop_after:
                        raise _Dropped
                    if sent and delay:
                        await asyncio.sleep(delay)
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                    sent += 1
                    chunk = await anext(rest, end)
            except BackendError as exc:
                error = {"message": str(exc), "type": "invalid_request_error", "param": exc.param, "code": exc.code}
                yield f"data: {json.dumps({'error': error})}\n\n".encode()
                return
            finally:
                close = getattr(chunks, "close", None)
                # a thread may still be inside next() when the client went away
                with contextlib.suppress(ValueError):
                    if close is not None:
                        close()
            if drop_after is not None:
                raise _Dropped  # a drop after the last chunk still loses [DONE]
            yield b"data: [DONE]\n\n"

        return _events(events())

    def models(self) -> Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "tidal"} for m in self.backend.models()]
        return _json({"object": "list", "data": data})

    def requests(self, limit: int | None) -> list[dict[str, Any]]:
        with self.log_lock:
            entries = list(self.log)
        return entries[-limit:] if limit else entries


def _fault_response(fault: Fault) -> Response:
    if fault.kind == "429":
        headers = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
        return _error(429, "Rate limit reached (a stand-in fault).", code="rate_limit_exceeded", headers=headers)
    return _error(500, "The server had an error while processing your request (a stand-in fault).")


# --------------------------------------------------------------------------- the app


def build_app(
    backend: Backend,
    *,
    api_key: str | None = None,
    faults: list[Fault] | Faults | None = None,
    control: bool | None = None,
    log_size: int = REQUEST_LOG_SIZE,
) -> FastAPI:
    """The OpenAI HTTP API in front of ``backend``.

    ``api_key``: requests without ``Authorization: Bearer <api_key>`` get 401.
    ``faults``: injected from the start. ``control``: add the
    ``/_stand-in/...`` routes (default: when ``backend`` is a
    :class:`~tidal.models.standin.StandIn`)."""
    from fastapi import FastAPI

    service = _Service(backend, api_key, faults if isinstance(faults, Faults) else Faults(faults), log_size)
    app = FastAPI(title="Tidal model server", openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(_CutConnections)
    app.state.service = service

    async def chat(request: Request) -> Response:
        return await service.call(request, "chat")

    async def complete(request: Request) -> Response:
        return await service.call(request, "complete")

    async def embed(request: Request) -> Response:
        return await service.call(request, "embed")

    async def models(request: Request) -> Response:
        return service.refused(request) or service.models()

    async def model(request: Request) -> Response:
        name = request.path_params["model"]
        if (refusal := service.refused(request)) is not None:
            return refusal
        if name not in backend.models():
            return _error(404, f"The model '{name}' does not exist.", code="model_not_found", param="model")
        return _json({"id": name, "object": "model", "created": 0, "owned_by": "tidal"})

    app.add_route("/v1/chat/completions", chat, methods=["POST"])
    app.add_route("/v1/completions", complete, methods=["POST"])
    app.add_route("/v1/embeddings", embed, methods=["POST"])
    app.add_route("/v1/models", models, methods=["GET"])
    app.add_route("/v1/models/{model:path}", model, methods=["GET"])
    if control if control is not None else isinstance(backend, StandIn):
        _add_control(app, service)
    return app


def _add_control(app: FastAPI, service: _Service) -> None:
    backend = service.backend

    async def faults(request: Request) -> Response:
        if (refusal := service.refused(request)) is not None:
            return refusal
        if request.method == "DELETE":
            service.faults.clear()
        elif request.method == "POST":
            try:
                service.faults.replace(parse_faults(json.loads(await request.body())))
            except (json.JSONDecodeError, FaultError) as exc:
                return _error(400, str(exc), code="invalid_fault")
        return _json(service.faults.as_list())

    async def script(request: Request) -> Response:
        if (refusal := service.refused(request)) is not None:
            return refusal
        if not isinstance(backend, StandIn):
            return _error(404, "Only the stand-in model has a script.")
        if request.method == "DELETE":
            backend.set_script([])
        elif request.method == "POST":
            try:
                backend.set_script(parse_script(json.loads(await request.body())))
            except (json.JSONDecodeError, ScriptError) as exc:
                return _error(400, str(exc), code="invalid_script")
        return _json({"rules": len(backend.script)})

    async def requests(request: Request) -> Response:
        if (refusal := service.refused(request)) is not None:
            return refusal
        if request.method == "DELETE":
            with service.log_lock:
                service.log.clear()
            return _json([])
        limit = request.query_params.get("limit")
        if limit is not None and not limit.isdigit():
            return _error(400, f"'limit' must be a whole number, got {limit!r}", param="limit")
        return _json(service.requests(int(limit) if limit else None))

    app.add_route(f"{CONTROL}/faults", faults, methods=["GET", "POST", "DELETE"])
    app.add_route(f"{CONTROL}/script", script, methods=["GET", "POST", "DELETE"])
    app.add_route(f"{CONTROL}/requests", requests, methods=["GET", "DELETE"])


# --------------------------------------------------------------------------- running it


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port). Listening
    before the server starts means a client that reads the announced URL
    and connects at once waits in the backlog instead of being refused."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((host.strip("[]"), port), family=family, backlog=128)
    # Accepted connections inherit this (Linux): without it a kept-alive
    # connection waits ~40 ms per response (Nagle against delayed ACKs, as
    # the response goes out in two writes).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def serve(
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key: str | None = None,
    faults: list[Fault] | None = None,
    log_level: str = "warning",
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve ``backend`` until interrupted; ``port`` 0 picks a free port.
    ``announce`` is called with the base URL (``http://host:port/v1``) once
    the port is bound."""
    import uvicorn

    app = build_app(backend, api_key=api_key, faults=faults)
    sock = _listen(host, port)
    try:
        if announce is not None:
            announce(base_url(host, sock.getsockname()[1]))
        uvicorn.Server(uvicorn.Config(app, log_level=log_level)).run(sockets=[sock])
    finally:
        sock.close()


serve_backend = serve
"""Another name for :func:`serve`, for modules with a ``serve`` of their own."""


@contextlib.contextmanager
def serving(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` on a thread on a free port of ``host``; yields its base URL.

    >>> with serving(build_app(StandIn())) as url:  # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=url, api_key="x")
    """
    import uvicorn

    sock = _listen(host, 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tidal-model-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the model server did not start within {STARTUP_TIMEOUT:g} s")
            time.sleep(0.01)
        yield base_url(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        sock.close()
