"""How a component's state maps to stored keys.

By default each state key is stored and versioned on its own, so a commit
writes only the keys an update returned. A component that defines
``save_state`` / ``load_state`` (Motion's hooks for state that is not
picklable as is) is stored as one value instead: the only correct choice when
a user function decides how the whole state is saved, at the cost of writing
all of it on every commit.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from typing import Any

from ..exceptions import InitStateError, UpdateReturnError
from .state import IMMUTABLE_TYPES, Decode, Snapshot, UpdateState

Encode = Callable[[Any, str], bytes]

WHOLE_KEY = "\x00state"
WHOLE_NAME = "state"
"""What the one value is called: in errors, and in the signature that binds it
to its instance (encoding and decoding must name it alike)."""
"""The one stored key of a whole-state component (no user key can start with NUL)."""


class KeyLayout:
    """One stored key per state key."""

    def encode_initial(self, state: Mapping[str, Any], encode: Encode) -> dict[str, bytes]:
        for key in state:
            if not isinstance(key, str):
                raise InitStateError(f"state keys must be strings, got {key!r}")
        return {k: encode(v, k) for k, v in state.items()}

    def snapshot(self, version: int, raw: dict[str, bytes], decode: Decode, instance_id: str) -> Snapshot:
        return Snapshot(version, raw, decode, instance_id=instance_id)

    def advance(self, base: Snapshot, version: int, changed: dict[str, bytes], deleted: tuple[str, ...]) -> Snapshot:
        return base.advance(version, changed, deleted)

    def update_state(self, raw: Mapping[str, bytes], decode: Decode, instance_id: str) -> UpdateState:
        return UpdateState(raw, decode, instance_id)

    def encode(self, state: UpdateState, delta: Mapping[str, Any], encode: Encode) -> dict[str, bytes]:
        return {k: encode(v, k) for k, v in delta.items()}


class WholeLayout:
    """The whole state as one stored value, through save_state / load_state."""

    def __init__(
        self,
        save: Callable[[dict[str, Any]], Any] | None,
        load: Callable[[Any], dict[str, Any]] | None,
    ) -> None:
        self._save = save or (lambda state: state)
        self._load = load or (lambda saved: saved)

    def _loaded(self, raw: Mapping[str, bytes], decode: Decode) -> dict[str, Any]:
        blob = raw.get(WHOLE_KEY)
        if blob is None:
            return {}
        state = self._load(decode(blob, WHOLE_NAME))
        if not isinstance(state, dict):
            raise InitStateError(f"load_state must return a dict, got {type(state).__name__}")
        return state

    def encode_initial(self, state: Mapping[str, Any], encode: Encode) -> dict[str, bytes]:
        return {WHOLE_KEY: encode(self._save(dict(state)), WHOLE_NAME)}

    def snapshot(self, version: int, raw: dict[str, bytes], decode: Decode, instance_id: str) -> Snapshot:
        return Snapshot(version, raw, decode, instance_id=instance_id, values=self._loaded(raw, decode), whole=True)

    def advance(self, base: Snapshot, version: int, changed: dict[str, bytes], deleted: tuple[str, ...]) -> Snapshot:
        raw = dict(base.raw_items)
        raw.update(changed)
        return self.snapshot(version, raw, base.decoder, base.instance_id)

    def update_state(self, raw: Mapping[str, bytes], decode: Decode, instance_id: str) -> UpdateState:
        state = UpdateState({}, decode, instance_id)
        dict.update(state, self._loaded(raw, decode))
        return state

    def live_snapshot(
        self, version: int, raw: dict[str, bytes], decode: Decode, instance_id: str, unstorable: Mapping[str, Any]
    ) -> Snapshot:
        """A snapshot of the stored state (``load_state`` of the bytes) in
        which the values that cannot be pickled are the live objects this
        process holds (see :func:`unstorable`)."""
        values = self._loaded(raw, decode)
        values.update(unstorable)
        return Snapshot(version, raw, decode, instance_id=instance_id, values=values, whole=True)

    def encode(self, state: UpdateState, delta: Mapping[str, Any], encode: Encode) -> dict[str, bytes]:
        if not delta:
            return {}
        return {WHOLE_KEY: encode(self._save(dict(dict.items(state))), WHOLE_NAME)}


Layout = KeyLayout | WholeLayout

# Whether values of a type pickle, learnt once per type: the check runs on
# every commit of a whole-state component.
_PICKLES: dict[type, bool] = {}
_ASSUMED = frozenset({dict, list, tuple, set, frozenset})


def unstorable(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that cannot be pickled (a connection, a cursor on an
    in-memory database): ``save_state`` must leave them out, so the stored
    state cannot carry them, and the process that made them keeps the live
    objects in its snapshots and update ops' states (as Motion does), while
    other processes get what ``load_state`` rebuilds. Plain data and
    containers count as storable without a check (a cursor inside a list is
    not found)."""
    out = {}
    for key, value in values.items():
        kind = type(value)
        if kind in IMMUTABLE_TYPES or kind in _ASSUMED:
            continue
        pickles = _PICKLES.get(kind)
        if pickles is None:
            try:
                pickle.dumps(value, protocol=5)
                pickles = True
            except Exception:
                pickles = False
            _PICKLES[kind] = pickles
        if not pickles:
            out[key] = value
    return out


def check_delta(result: Any, where: str) -> Mapping[str, Any]:
    """An update op's return value as a delta, or a clear error."""
    if result is None:
        return {}
    if not isinstance(result, Mapping):
        raise UpdateReturnError(
            f"{where} returned {type(result).__name__}; an update op must return a dict "
            "of the state keys it changes (or None for no change)"
        )
    for key in result:
        if not isinstance(key, str):
            raise UpdateReturnError(f"{where} returned a non-string state key {key!r}")
    return result
