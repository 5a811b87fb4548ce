"""Turning state values, op payloads and props into bytes and keys.

State values and queued payloads are pickled (protocol 5, so numpy arrays are
copied as raw buffers) and signed with HMAC-SHA256 using the app's secret key.
Bytes whose signature does not check out are never unpickled, so write access
to a shared store cannot be turned into code execution in the processes that
read it.

Two formats, told apart by their first byte:

- ``\x01``: HMAC over the pickle only (payloads, and values stored before
  binding). Such bytes are valid anywhere the key is.
- ``\x02``: HMAC over a *context* and the pickle. The context names where the
  value belongs (``state_context(component, instance, key)``), so a
  value signed for one instance's key fails its check anywhere else: someone
  who can write the store cannot move B's value into A, or one key's value
  into another key. Values are written in this format when ``dumps`` gets a
  context; ``loads`` with a context checks it, and accepts ``\x01`` bytes only
  while the codec accepts unbound values (``accept_unbound``, on by default so
  that values stored before keep loading; turn it off once they are rewritten).
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from typing import Any

import orjson

from .exceptions import StateIntegrityError, StateSerializationError

_FORMAT = b"\x01"
_BOUND = b"\x02"
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


def state_context(component: str, instance: str, key: str = "") -> bytes:
    """The context that binds a state value to where it belongs: each part
    length-prefixed, so no two different tuples give the same bytes. Build
    the prefix once per instance and add the key with ``key_context``. The
    app is not a part: the store and the secret key already are the app, and
    several processes (a server, workers, the CLI) open it under their own
    names."""
    return _part(component) + _part(instance) + (_part(key) if key else b"")


def key_context(prefix: bytes, key: str) -> bytes:
    """``prefix`` (a ``state_context`` without key) bound to ``key`` too."""
    return prefix + _part(key)


def _part(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return len(data).to_bytes(4, "big") + data


class Codec:
    """Signs and serialises values with one secret key."""

    __slots__ = ("_bound", "_key", "_mac", "accept_unbound")

    def __init__(self, secret_key: bytes, *, accept_unbound: bool = True) -> None:
        if len(secret_key) < 16:
            raise ValueError("secret_key must be at least 16 bytes")
        self._key = secret_key
        self._mac = hmac.new(secret_key, digestmod=hashlib.sha256)
        # The format byte goes first into a bound MAC: its data can never be
        # read as an unbound pickle's, nor the other way round.
        self._bound = self._mac.copy()
        self._bound.update(_BOUND)
        self.accept_unbound = accept_unbound
        """Whether ``loads`` with a context accepts bytes signed without one."""

    def _sign_bound(self, context: bytes, data: bytes | memoryview) -> bytes:
        mac = self._bound.copy()
        mac.update(len(context).to_bytes(4, "big"))
        mac.update(context)
        mac.update(data)
        return mac.digest()

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

    def dumps(self, value: Any, *, what: What = "value", context: bytes | None = None) -> bytes:
        """Serialise ``value``; ``what`` names it in the error if that fails.
        With ``context`` (e.g. ``state_context(...)``) the signature binds
        the value to it: ``loads`` must be given the same context."""
        try:
            data = pickle.dumps(value, protocol=5)
        except Exception as exc:
            raise StateSerializationError(
                f"cannot serialise {describe(what)}: {type(value).__name__} is not picklable ({exc}). "
                "Store plain data (dicts, lists, numbers, strings, numpy arrays), or define "
                "save_state / load_state on the component to convert it."
            ) from exc
        if context is None:
            return b"".join((_FORMAT, self._sign(data), data))
        return b"".join((_BOUND, self._sign_bound(context, data), data))

    def verify(self, raw: bytes, *, what: What = "value", context: bytes | None = None) -> memoryview:
        """The pickle inside ``raw`` once its signature checks out (for
        ``context`` if given), else StateIntegrityError; nothing is unpickled."""
        view = memoryview(raw)
        fmt = raw[:1]
        if len(raw) < _HEADER or fmt not in (_FORMAT, _BOUND):
            raise StateIntegrityError(f"{describe(what)}: not in Tidal's format; refusing to load it")
        body = view[_HEADER:]
        if fmt == _BOUND:
            if context is None:
                raise StateIntegrityError(
                    f"{describe(what)}: the bytes are bound to a place in the store, and were read "
                    "without saying which; refusing to load them"
                )
            expected = self._sign_bound(context, body)
        elif context is not None and not self.accept_unbound:
            raise StateIntegrityError(
                f"{describe(what)}: the bytes are not bound to their place in the store "
                "(written before binding, or a payload moved here); refusing to load them"
            )
        else:
            expected = self._sign(body)
        if not hmac.compare_digest(view[1:_HEADER], expected):
            raise StateIntegrityError(
                f"{describe(what)}: HMAC check failed; the bytes were not written with this app's "
                "secret key (TIDAL_SECRET_KEY)"
                + (" for this place in the store (moved from another instance or key?)" if fmt == _BOUND else "")
                + ", so they are not unpickled"
            )
        return body

    def loads(self, raw: bytes, *, what: What = "value", context: bytes | None = None) -> Any:
        """Check the signature of ``raw`` (for ``context``, as given to
        ``dumps``) and unpickle it."""
        return pickle.loads(self.verify(raw, what=what, context=context))


def props_key(props: dict[str, Any]) -> bytes | None:
    """A canonical key for ``props``: equal for equal props whatever their key
    order, distinct for 1, 1.0 and True. None when props hold values that have
    no canonical form (such calls are not cached)."""
    try:
        return orjson.dumps(props, option=_PROPS_OPTIONS)
    except TypeError:
        return None
