"""What every router of the API shares: the app, auth, options, and the
lookups that answer 404 with the known names. Routers (this package's and
later ones, like a dashboard) get it from ``context(api)`` or are built
with it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..relations.builtin import Feedback, Run
from .auth import Auth
from .errors import not_found
from .scopes import OPEN, Principal

if TYPE_CHECKING:
    from ..app import App
    from ..component import Component
    from ..relations import Record

INSTANCE_PATTERN = r"^[^\x00-\x1f\x7f/]{1,200}$"
"""Instance ids the API accepts: 1-200 characters, no '/' or control characters."""

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.~-]+$")
"""Names that can appear literally in a route path (other names are served
by the generic routes)."""

_bearer = HTTPBearer(auto_error=False, description="An API key (tidal_…) or a JWT")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (tidal_…)")


@dataclass
class ServerContext:
    """Shared by the routers of one API."""

    app: App
    auth: Auth | None = None
    relations: dict[str, type[Record]] = field(default_factory=dict)
    """Relation (table) name -> Record class, as exposed by the API."""
    run_updates: bool = True
    create_instances: bool = True
    read_only_relations: frozenset[str] = frozenset({"runs", "feedback"})
    max_props_depth: int = 64
    """Deepest nesting of lists and objects the props of a run may have."""

    def component(self, name: str, principal: Principal | None = None) -> Component:
        """The component ``name``, else 404 listing the known ones (those
        ``principal`` may read)."""
        comp = self.app.components.get(name)
        if comp is None:
            known = [n for n in self.app.components if principal is None or principal.can(n)]
            raise not_found("component", name, known)
        return comp

    def flow(self, comp: Component, flow: str) -> None:
        """404 listing ``comp``'s callable flows unless ``flow`` is one."""
        callable_flows = runnable_flows(comp)
        if flow not in callable_flows:
            why = " (it runs on relation changes or a schedule only)" if flow in comp.flow_keys() else ""
            raise not_found("flow", flow, callable_flows, f" to run in component {comp.name}{why}")

    def instance_version(self, comp: Component, instance: str, principal: Principal | None = None) -> int:
        """The state version of an existing instance, else 404 listing some
        known ones: only those ``principal`` may read (a scope never learns
        the ids of instances outside it)."""
        version = self.app.store.get_version(comp.name, instance)
        if version is None:
            known = self.app.store.list_instances(comp.name)
            if principal is not None and principal.scope is not None:
                known = [i for i in known if principal.can(comp.name, i)]
            raise not_found("instance", instance, known, f" of {comp.name}")
        return version

    def relation(self, name: str, principal: Principal | None = None) -> type[Record]:
        """The relation ``name``, else 404 listing those ``principal`` may read."""
        cls = self.relations.get(name)
        if cls is None:
            known = [n for n in self.relations if principal is None or principal.can_relation(n)]
            raise not_found("relation", name, known)
        return cls

    async def principal(
        self,
        bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
        api_key: str | None = Security(_api_key),
    ) -> Principal:
        """FastAPI dependency: the caller (401 if auth is on and they show
        no valid credentials). A key verified moments ago is answered on the
        event loop; anything else (a database read) in a worker thread."""
        if self.auth is None:
            return OPEN
        token = bearer.credentials if bearer else None
        found = self.auth.cached(token, api_key)
        if found is not None:
            return found
        return await run_in_threadpool(self.auth.authenticate, token, api_key)


def runnable_flows(comp: Component) -> list[str]:
    """The flows a caller may run: all but those without a serve op whose
    update ops are fired by relation triggers or schedules only (run by
    hand they would lack the record or time their ops expect)."""
    fired = {t.flow for t in comp.triggers} | {s.flow for s in comp.schedules}
    return [f for f in comp.flow_keys() if f in comp.serve_routes or f not in fired]


def default_relations(app: App, extra: Iterable[type[Record]] = ()) -> dict[str, type[Record]]:
    """The relations an API exposes: ``extra``, those that trigger the app's
    components, those its database has registered, and runs and feedback."""
    classes: list[type[Record]] = [*extra]
    for comp in app.components.values():
        classes.extend(t.relation for t in comp.triggers)
    if app._db is not None:
        classes.extend(rel.cls for rel in app._db._relations.values())
    classes += [Run, Feedback]
    out: dict[str, type[Record]] = {}
    for cls in classes:
        out.setdefault(cls.relation(), cls)
    return out


def context(api: FastAPI | Request) -> ServerContext:
    """The ServerContext of an API made by ``create_app`` (or of a request to it)."""
    state: Any = api.app.state if isinstance(api, Request) else api.state
    ctx = getattr(state, "tidal", None)
    if not isinstance(ctx, ServerContext):
        raise LookupError("this FastAPI app was not made by tidal.server.create_app")
    return ctx
