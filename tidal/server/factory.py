"""``create_app``: the HTTP API of a Tidal app, as a FastAPI application."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from fastapi import FastAPI

from .. import __version__
from . import dashboard as dashboard_routes
from . import errors
from .auth import Auth
from .context import ServerContext, default_relations
from .fastlane import FastLane
from .limits import DEFAULT_MAX_BODY_BYTES, BodyLimit, PathCheck
from .routes import components as component_routes
from .routes import flows as flow_routes
from .routes import relations as relation_routes
from .routes import system as system_routes

if TYPE_CHECKING:
    from ..app import App
    from ..relations import Record


def create_app(
    app: App,
    *,
    auth: Auth | bool | None = None,
    relations: Iterable[type[Record]] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    run_updates: bool = True,
    create_instances: bool = True,
    title: str | None = None,
    openapi: bool = True,
    dashboard: bool = True,
    max_props_depth: int = 64,
) -> FastAPI:
    """The HTTP API of ``app``: flows, state, relations, feedback, queue,
    health. Mount it in an existing ASGI app or serve it with uvicorn::

        api = create_app(app, auth=True)           # API keys from app's database
        outer.mount("/tidal", api)

    ``auth``: None or False for no auth (loopback only); True for API keys in
    the app's database (and JWTs if ``TIDAL_JWT_SECRET`` is set); or an
    :class:`Auth`. ``relations``: Record classes to expose besides those
    the app already knows (trigger relations, registered tables, runs,
    feedback). Bodies over ``max_body_bytes`` get 413. With
    ``run_updates=False`` this process queues updates but leaves running
    them to ``tidal worker``. With ``create_instances=False`` running a flow
    on an unknown instance is a 404 instead of creating it (Motion's
    behaviour, the default). ``openapi=False`` serves no ``/openapi.json``
    and ``/docs`` (they are public, and name components, flows and relations).
    ``dashboard=False`` leaves out the web dashboard (``/dashboard/``).
    Props nested deeper than ``max_props_depth``, or holding text that is
    not UTF-8 or integers past 64 bits, get 422.

    Further routers can join: ``api.include_router(r)``, with
    ``tidal.server.context(api)`` for the app and the caller's scope."""
    if max_props_depth < 1:
        raise ValueError(f"max_props_depth must be at least 1, got {max_props_depth}")
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
    resolved = Auth.for_app(app) if auth is True else (auth or None)
    ctx = ServerContext(
        app=app,
        auth=resolved,
        relations=default_relations(app, relations),
        run_updates=run_updates,
        create_instances=create_instances,
        max_props_depth=max_props_depth,
    )
    api = FastAPI(
        title=title or f"Tidal app {app.name}",
        version=__version__,
        description="Flows, state, relations and feedback of a Tidal app.",
        openapi_url="/openapi.json" if openapi else None,
    )
    api.state.tidal = ctx
    errors.install(api)
    api.add_middleware(FastLane, ctx=ctx, api=api)  # innermost: inside the path and size checks
    api.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    api.add_middleware(PathCheck)
    for module in (system_routes, component_routes, flow_routes, relation_routes):
        api.include_router(module.router(ctx))
    if dashboard:
        dashboard_routes.install(api, ctx)
    return api
