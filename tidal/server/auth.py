"""Who may call the API, and on what.

A caller shows an API key (``Authorization: Bearer tidal_…`` or
``X-API-Key: tidal_…``; see :mod:`tidal.server.keys`) or, where a JWT
secret is configured, a JWT signed with HS256 whose ``tidal`` claim holds a
scope and whose ``exp`` is required. Both carry a :class:`Scope`: which
components, instances and relations (shell-style patterns) and whether it
may write. Without auth configured every caller may do everything, which
``tidal serve`` allows only on a loopback address.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import jwt

from ..exceptions import ConfigError
from .errors import APIError
from .keys import KeyStore
from .scopes import OPEN, Principal, Scope

if TYPE_CHECKING:
    from ..app import App

__all__ = ["JWT_SECRET_ENV", "OPEN", "Auth", "Principal", "Scope", "check_jwt_secret", "issue_token"]

JWT_SECRET_ENV = "TIDAL_JWT_SECRET"
JWT_ALGORITHM = "HS256"
JWT_CLAIM = "tidal"
JWT_SECRET_MIN_BYTES = 32
"""Shortest JWT secret accepted: HS256 with a short secret can be brute-forced
offline from any one token."""


def check_jwt_secret(secret: str | bytes) -> bytes:
    """``secret`` as bytes, if it is strong enough to sign JWTs; else
    ConfigError naming ``TIDAL_JWT_SECRET`` and how to make one."""
    data = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else bytes(secret)
    if len(data) < JWT_SECRET_MIN_BYTES:
        raise ConfigError(
            f"the JWT secret ({JWT_SECRET_ENV}) must be at least {JWT_SECRET_MIN_BYTES} bytes, got {len(data)}; "
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    if len(set(data)) < 8:
        raise ConfigError(
            f"the JWT secret ({JWT_SECRET_ENV}) repeats too few distinct bytes ({len(set(data))}) to be secret; "
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return data


def issue_token(secret: str | bytes, scope: Scope, *, ttl_seconds: float = 3600, subject: str = "tidal") -> str:
    """A JWT (HS256) carrying ``scope`` in its ``tidal`` claim, valid for
    ``ttl_seconds``; e.g. a backend hands a browser one scoped to its user's
    instance::

        issue_token(secret, Scope(components=("Prefs",), instances=("u1",), write=True))
    """
    check_jwt_secret(secret)
    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + int(ttl_seconds), JWT_CLAIM: scope.as_dict()}
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def _unauthorized(message: str) -> APIError:
    return APIError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


class Auth:
    """Authentication for :func:`tidal.server.create_app`: API keys from
    ``keys`` and, if ``jwt_secret`` is given, HS256 JWTs."""

    def __init__(self, keys: KeyStore | None = None, jwt_secret: str | bytes | None = None) -> None:
        if keys is None and not jwt_secret:
            raise ValueError("Auth needs API keys, a JWT secret, or both")
        self.keys = keys
        self.jwt_secret: bytes | None = check_jwt_secret(jwt_secret) if jwt_secret else None

    @classmethod
    def for_app(cls, app: App, jwt_secret: str | bytes | None = None) -> Auth:
        """Keys from ``app``'s database; JWTs too when ``jwt_secret`` or
        ``TIDAL_JWT_SECRET`` is set."""
        return cls(KeyStore(app.db), jwt_secret or os.environ.get(JWT_SECRET_ENV) or None)

    def cached(self, bearer: str | None, api_key: str | None) -> Principal | None:
        """The caller behind an API key found valid moments ago (see
        :meth:`KeyStore.cached`), without reading the database; None when
        :meth:`authenticate` must decide (it may read the database)."""
        credential = api_key or bearer
        if not credential or self.keys is None or not credential.startswith("tidal_"):
            return None
        record = self.keys.cached(credential)
        return None if record is None else Principal("key", record.name or record.id, record.scope)

    def authenticate(self, bearer: str | None, api_key: str | None) -> Principal:
        """The caller behind these credentials; APIError 401 if none are valid."""
        credential = api_key or bearer
        if not credential:
            raise _unauthorized("authentication required: send 'Authorization: Bearer <API key or JWT>'")
        if credential.startswith("tidal_"):
            if self.keys is None:
                raise _unauthorized("this server accepts JWTs only")
            record = self.keys.verify(credential)
            if record is None:
                raise _unauthorized("invalid or revoked API key")
            return Principal("key", record.name or record.id, record.scope)
        if self.jwt_secret is None:
            raise _unauthorized("invalid API key (keys start with 'tidal_'); this server accepts no JWTs")
        try:
            claims = jwt.decode(
                credential, self.jwt_secret, algorithms=[JWT_ALGORITHM], options={"require": ["exp", JWT_CLAIM]}
            )
            scope = Scope.from_dict(claims[JWT_CLAIM])
        except jwt.ExpiredSignatureError:
            raise _unauthorized("JWT expired") from None
        except (jwt.PyJWTError, ValueError) as exc:
            raise _unauthorized(f"invalid JWT: {exc}") from None
        return Principal("jwt", str(claims.get("sub", "jwt")), scope)
