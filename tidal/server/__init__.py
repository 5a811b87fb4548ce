"""The HTTP API of a Tidal app (FastAPI), its auth, and ``tidal serve``.

``create_app(app)`` builds the API; routers live in :mod:`.routes`, one
module per area, and share a :class:`ServerContext`."""

from .auth import Auth, Principal, Scope, issue_token
from .context import ServerContext, context
from .factory import create_app
from .keys import ApiKey, KeyStore
from .limits import DEFAULT_MAX_BODY_BYTES

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
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
