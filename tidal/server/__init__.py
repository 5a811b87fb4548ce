"""The HTTP API of a Tidal app (FastAPI) and its auth.

``create_app(app)`` builds the API; routers live in :mod:`.routes`, one
module per area, and share a :class:`ServerContext`. Names load on first use
(FastAPI costs ~200 ms), so that the CLI can hold ``tidal.server`` without
slowing ``tidal --help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy

if TYPE_CHECKING:
    from .auth import JWT_SECRET_ENV, Auth, Principal, Scope, issue_token
    from .context import ServerContext, context
    from .factory import create_app
    from .keys import ApiKey, KeyStore
    from .limits import DEFAULT_MAX_BODY_BYTES

_MODULES = {
    "JWT_SECRET_ENV": ".auth",
    "Auth": ".auth",
    "Principal": ".auth",
    "Scope": ".auth",
    "issue_token": ".auth",
    "ServerContext": ".context",
    "context": ".context",
    "create_app": ".factory",
    "ApiKey": ".keys",
    "KeyStore": ".keys",
    "DEFAULT_MAX_BODY_BYTES": ".limits",
}


__getattr__ = lazy.attributes(__name__, _MODULES, globals())

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "JWT_SECRET_ENV",
    "ApiKey",
    "Auth",
    "KeyStore",
    "Principal",
    "Scope",
    "ServerContext",
    "context",
    "create_app",
    "issue_token",
]
