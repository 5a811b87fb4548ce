"""The web dashboard: one HTML page, a stylesheet and a small vanilla
script (no build step, nothing fetched from elsewhere), served at
``/dashboard/`` by :func:`tidal.server.create_app`, over the JSON routes of
:mod:`tidal.server.dashboard.api`.

The page is public (it holds no data); its data routes use the API's auth.
With auth on, the page asks for an API key or JWT, keeps it in the tab's
``sessionStorage`` and sends it as ``Authorization: Bearer …``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse, Response

from ..context import ServerContext
from . import api as data

ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
"""Files under ``static/`` served at ``/dashboard/static/<name>``, with their media types."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""The page loads only its own files and talks only to its own server."""

_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def pages() -> APIRouter:
    """The page and its two files (hidden from the OpenAPI document)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/dashboard")
    def redirect() -> RedirectResponse:
        # Relative, so it also works when the API is mounted under a prefix.
        return RedirectResponse("dashboard/", status_code=308)

    @router.get("/dashboard/")
    def index() -> Response:
        return Response(_asset("index.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)

    for name, media_type in ASSETS.items():
        router.add_api_route(f"/dashboard/static/{name}", _static(_asset(name), media_type), methods=["GET"])
    return router


def _static(body: bytes, media_type: str) -> Callable[[], Response]:
    def serve() -> Response:
        return Response(body, media_type=media_type, headers=_HEADERS)

    return serve


def install(api: FastAPI, ctx: ServerContext) -> None:
    """Add the dashboard (page and data routes) to an API made by ``create_app``."""
    api.include_router(pages())
    api.include_router(data.router(ctx))
