"""Turning state values, op payloads and props into bytes and keys.

State values and queued payloads are pickled (protocol 5, so numpy arrays are
copied as raw buffers) and signed with HMAC-SHA256 using the app's secret key.
Bytes whose signature does not check out are never unpickled, so write access
to a shared store cannot be turned into code execution in the processes that
read it.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from typing import Any

import orjson

from .exceptions import StateIntegrityError, StateSerializationError

_FORMAT = b"\x01"
_MAC_SIZE = 32
_HEADER = len(_FORMAT) + _MAC_SIZE
# No OPT_NON_STR_KEYS: it would give {1: x} and {"1": x} the same key. Props
# with non-string dict keys are not cached instead.
_PROPS_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


What = str | tuple[str, object] | tuple[str, object, str]
"""Names a value in error messages: a string, or (label, value[, suffix]),
formatted only when an error is raised (an f-string per call would cost time
on hot paths)."""


def describe(what: What) -> str:
    """The text of a ``What``: ``label repr(value) suffix``."""
    if isinstance(what, str):
        return what
    return " ".join((what[0], repr(what[1]), *what[2:]))


class Codec:
    """Signs and serialises values with one secret key."""

    __slots__ = ("_key", "_mac")

    def __init__(self, secret_key: bytes) -> None:
        if len(secret_key) < 16:
            raise ValueError("secret_key must be at least 16 bytes")
        self._key = secret_key
        self._mac = hmac.new(secret_key, digestmod=hashlib.sha256)

    def _sign(self, data: bytes | memoryview) -> bytes:
        # A copy of a keyed HMAC rather than hmac.digest(): the one-shot
        # function lets go of the GIL on every call, however short the data,
        # and a thread that signs op payloads while the update thread runs
        # Python then waits milliseconds to get it back. A copy skips the
        # key setup too, and still lets go of the GIL for large values.
        mac = self._mac.copy()
        mac.update(data)
        return mac.digest()

    @property
    def key(self) -> bytes:
        """The secret key (handed to worker processes of the same app)."""
        return self._key

    def dumps(self, value: Any, *, what: What = "value") -> bytes:
        """Serialise ``value``; ``what`` names it in the error if that fails."""
        try:
            data = pickle.dumps(value, protocol=5)
        except Exception as exc:
            raise StateSerializationError(
                f"cannot serialise {describe(what)}: {type(value).__name__} is not picklable ({exc}). "
                "Store plain data (dicts, lists, numbers, strings, numpy arrays), or define "
                "save_state / load_state on the component to convert it."
            ) from exc
        return b"".join((_FORMAT, self._sign(data), data))

    def loads(self, raw: bytes, *, what: What = "value") -> Any:
        """Check the signature of ``raw`` and unpickle it."""
        view = memoryview(raw)
        if raw[:1] != _FORMAT or len(raw) < _HEADER:
            raise StateIntegrityError(f"{describe(what)}: not in Tidal's format; refusing to load it")
        body = view[_HEADER:]
        if not hmac.compare_digest(view[1:_HEADER], self._sign(body)):
            raise StateIntegrityError(
                f"{describe(what)}: HMAC check failed; the bytes were not written with this app's "
                "secret key (TIDAL_SECRET_KEY), so they are not unpickled"
            )
        return pickle.loads(body)


def props_key(props: dict[str, Any]) -> bytes | None:
    """A canonical key for ``props``: equal for equal props whatever their key
    order, distinct for 1, 1.0 and True. None when props hold values that have
    no canonical form (such calls are not cached)."""
    try:
        return orjson.dumps(props, option=_PROPS_OPTIONS)
    except TypeError:
        return None
