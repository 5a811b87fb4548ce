"""Error responses of the HTTP API.

Every error body has the same shape: ``{"error": CODE, "message": TEXT}``
plus details (``known`` names for a 404, ``detail`` field errors for a
422). Tidal's own exceptions map to statuses here, in one place."""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..exceptions import (
    MissingPropError,
    NotFoundError,
    PropsValidationError,
    RecordNotFoundError,
    RecordValidationError,
    SchemaError,
    StateIntegrityError,
    UpdateFailedError,
    VersionConflictError,
)

log = logging.getLogger("tidal.server")

KNOWN_LIMIT = 50
"""How many known names a 404 lists at most (instances can be many)."""


class APIError(Exception):
    """Raised inside a route to answer ``status`` with a Tidal error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


def not_found(kind: str, name: str, known: list[str], where: str = "") -> APIError:
    """A 404 naming what was asked for and listing what exists."""
    shown = sorted(known)[:KNOWN_LIMIT]
    more = f" (first {KNOWN_LIMIT} of {len(known)})" if len(known) > KNOWN_LIMIT else ""
    return APIError(
        404,
        f"unknown_{kind}",
        f"no {kind} {name!r}{where}; known {kind}s{more}: {shown}",
        known=shown,
    )


def _field_errors(errors: list[tuple[str, str]], prefix: list[str]) -> list[dict[str, Any]]:
    return [{"loc": [*prefix, *field.split(".")], "msg": msg} for field, msg in errors]


def _summary(detail: list[dict[str, Any]]) -> str:
    first = detail[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    return f"{where}: {first['msg']}{more}"


class ErrorResponse(JSONResponse):
    """An error body, in ASCII JSON: a lone surrogate the caller sent and a
    message repeats is escaped (``\\udc80``) rather than failing to encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")


_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def _respond(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return ErrorResponse(body, status_code=status, headers=headers)


def install(api: FastAPI) -> None:
    """Register the handlers that turn errors into Tidal error bodies."""

    @api.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return _respond(exc.status, exc.body(), exc.headers)

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette's and FastAPI's own refusals: an unknown path, a method
        # not allowed, a body that does not parse (invalid UTF-8, JSON
        # nested too deep), in the same shape as Tidal's
        code = _CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, default=str)
        if exc.status_code == 400 and message == "There was an error parsing the body":
            cause = exc.__cause__
            why = f" ({type(cause).__name__})" if cause is not None else ""
            message = f"the request body is not valid JSON{why}: it must be UTF-8 JSON nested at most ~1000 levels"
            code = "invalid_body"
        return _respond(exc.status_code, {"error": code, "message": message}, getattr(exc, "headers", None))

    @api.exception_handler(StateIntegrityError)
    async def state_corrupt(request: Request, exc: StateIntegrityError) -> JSONResponse:
        # stored bytes that fail their HMAC: corrupted or tampered storage,
        # not the caller's mistake; answered, never unpickled
        log.error("state integrity check failed: %s", exc)
        return _respond(500, {"error": "state_integrity", "message": str(exc)})

    @api.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
        message = f"internal error ({type(exc).__name__}); nothing more is said to the caller, see the server log"
        return _respond(500, {"error": "internal_error", "message": message})

    @api.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The input is left out: it can be large, and it is what the caller sent.
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        if not detail:  # pragma: no cover - pydantic always names a problem
            detail = [{"loc": ["body"], "msg": "invalid request", "type": "invalid"}]
        return _respond(422, {"error": "validation_error", "message": _summary(detail), "detail": detail})

    @api.exception_handler(PropsValidationError)
    async def props_invalid(request: Request, exc: PropsValidationError) -> JSONResponse:
        detail = _field_errors(exc.errors, ["body", "props"])
        return _respond(422, {"error": "validation_error", "message": _summary(detail), "detail": detail})

    @api.exception_handler(MissingPropError)
    async def prop_missing(request: Request, exc: MissingPropError) -> JSONResponse:
        detail = [{"loc": ["body", "props", exc.key], "msg": "Field required by the op", "type": "missing"}]
        return _respond(422, {"error": "validation_error", "message": str(exc), "detail": detail})

    @api.exception_handler(RecordValidationError)
    async def record_invalid(request: Request, exc: RecordValidationError) -> JSONResponse:
        if exc.errors and exc.errors[0][2] == "duplicate id":
            return _respond(409, {"error": "duplicate_id", "message": str(exc)})
        detail = [
            {"loc": ["body", index, *(field.split(".") if field else [])], "msg": msg}
            for index, field, msg in exc.errors
        ]
        return _respond(422, {"error": "validation_error", "message": str(exc), "detail": detail})

    @api.exception_handler(SchemaError)
    async def schema_error(request: Request, exc: SchemaError) -> JSONResponse:
        return _respond(422, {"error": "schema_error", "message": str(exc)})

    @api.exception_handler(RecordNotFoundError)
    async def record_missing(request: Request, exc: RecordNotFoundError) -> JSONResponse:
        return _respond(404, {"error": "not_found", "message": str(exc)})

    @api.exception_handler(NotFoundError)
    async def admin_missing(request: Request, exc: NotFoundError) -> JSONResponse:
        # raised by tidal.admin (the dashboard's data) for an unknown instance, key, version or failed op
        shown = exc.known[:KNOWN_LIMIT]
        return _respond(404, {"error": f"unknown_{exc.kind.replace(' ', '_')}", "message": str(exc), "known": shown})

    @api.exception_handler(VersionConflictError)
    async def version_conflict(request: Request, exc: VersionConflictError) -> JSONResponse:
        message = f"the state changed meanwhile, nothing was written; reload and try again ({exc})"
        return _respond(409, {"error": "version_conflict", "message": message})

    @api.exception_handler(sa.exc.DataError)
    async def data_refused(request: Request, exc: sa.exc.DataError) -> JSONResponse:
        # e.g. PostgreSQL refusing a NUL character in text: the caller's value, not a server fault
        message = f"the database refused a value, nothing was written: {str(exc.orig).strip().splitlines()[0]}"
        return _respond(422, {"error": "invalid_value", "message": message})

    @api.exception_handler(UpdateFailedError)
    async def update_failed(request: Request, exc: UpdateFailedError) -> JSONResponse:
        failures = [{"op_id": f.op_id, "flow": f.flow, "error": f.error} for f in exc.failures]
        return _respond(500, {"error": "update_failed", "message": str(exc), "failures": failures})
