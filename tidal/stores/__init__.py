"""Stores, chosen by URL: ``memory://``, ``sqlite:///path``, ``redis://host:port/db``."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from ..exceptions import ConfigError
from .base import Claim, ClaimedOp, KeyInfo, KeyVersion, NewOp, QueueStats, StateRead, Store

__all__ = [
    "Claim",
    "ClaimedOp",
    "KeyInfo",
    "KeyVersion",
    "NewOp",
    "QueueStats",
    "StateRead",
    "Store",
    "from_url",
    "SCHEMES",
]

SCHEMES: dict[str, tuple[str, str, str]] = {
    # scheme: (module, class, pip extra that provides its dependency)
    "memory": ("tidal.stores.memory", "MemoryStore", ""),
    "sqlite": ("tidal.stores.sqlite", "SQLiteStore", ""),
    "redis": ("tidal.stores.redis", "RedisStore", "redis"),
    "rediss": ("tidal.stores.redis", "RedisStore", "redis"),
}


def from_url(url: str) -> Store:
    """Open the store a URL names; the backend module is imported only now.

    >>> from_url("memory://")
    <MemoryStore memory://>
    """
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigError(f"unknown store URL scheme {scheme!r} in {url!r}; known: {known}")
    module_name, class_name, extra = SCHEMES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # pragma: no cover - only with extras missing
        raise ConfigError(
            f"the {scheme}:// store needs an optional dependency: pip install 'tidal[{extra}]' ({exc})"
        ) from exc
    store: Store = getattr(module, class_name).from_url(url)
    return store
