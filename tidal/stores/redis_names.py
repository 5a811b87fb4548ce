"""Names and small conversions shared by the Redis store's modules."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _seconds(ms: bytes | str) -> float | None:
    """Epoch seconds of a stored ms value; None when it was never recorded."""
    return int(ms) / 1000 if ms else None


def _safe(url: str) -> str:
    """``url`` with its password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
