"""Store URLs and the redis-py client they open.

Query parameters other than the store's own (``namespace``,
``single_slot``, ``cluster``) go to redis-py, and from its pool to every
connection the store opens (the hot path's and the version cache's too):
over TLS, ``?ssl_ca_certs=/path/to/ca.pem`` names the CA that signed the
server's certificate (else the system's CAs must have; a certificate that
does not verify fails each call with :class:`~tidal.exceptions.StoreError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from ...exceptions import ConfigError

DEFAULT_NAMESPACE = "tidal"
"""Prefix of every key, unless the URL names another with ``?namespace=``."""


@dataclass(frozen=True)
class StoreURL:
    """What a ``redis://`` store URL asks for."""

    namespace: str
    single_slot: bool | None
    """None when the URL does not say."""
    cluster: bool
    client_url: str
    """The URL without the store's own parameters, for redis-py."""


def parse_url(url: str) -> StoreURL:
    parts = urlsplit(url)
    namespace = DEFAULT_NAMESPACE
    flags: dict[str, bool] = {}
    rest = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "namespace":
            if not value:
                raise ConfigError(f"empty namespace in store URL {safe_url(url)!r}")
            namespace = value
        elif key in ("single_slot", "cluster"):
            if value not in ("0", "1"):
                raise ConfigError(f"{key} in store URL {safe_url(url)!r} must be 0 or 1, not {value!r}")
            flags[key] = value == "1"
        else:
            rest.append((key, value))  # for redis-py: ssl_ca_certs, socket_timeout, ...
    client_url = urlunsplit(parts._replace(query=urlencode(rest)))
    return StoreURL(namespace, flags.get("single_slot"), flags.get("cluster", False), client_url)


def connect(url: str) -> redis.Redis:
    """A client of one server (``url`` without the store's parameters)."""
    try:
        return redis.Redis.from_url(url)
    except ValueError as exc:
        raise ConfigError(f"bad Redis store URL {safe_url(url)!r}: {exc}") from exc


def safe_url(url: str) -> str:
    """``url`` with its password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
