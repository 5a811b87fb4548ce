"""Views of an instance's state handed to ops.

A :class:`Snapshot` is one committed version, shared read-only by every serve
op in the process; each key is deserialised on first access only, so a serve
that reads one small key never pays for a large one. An :class:`UpdateState`
is an update op's private view: each key it reads is deserialised afresh from
the committed bytes, so mutating a value in place never leaks into serves or
into the next op when this one fails.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping
from typing import Any

Decode = Callable[[bytes, str], Any]


class Snapshot(Mapping[str, Any]):
    """Read-only state of one instance at one version."""

    __slots__ = ("_decode", "_raw", "_values", "_whole", "instance_id", "version")

    def __init__(
        self,
        version: int,
        raw: dict[str, bytes],
        decode: Decode,
        *,
        instance_id: str = "",
        values: dict[str, Any] | None = None,
        whole: bool = False,
    ) -> None:
        self.version = version
        self._whole = whole
        self.instance_id = instance_id
        self._raw = raw
        self._decode = decode
        self._values: dict[str, Any] = values if values is not None else {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            pass
        raw = None if self._whole else self._raw.get(key)
        if raw is None:
            raise KeyError(f"state has no key {key!r} (have: {sorted(self)})")
        # Two threads may decode the same key at once; both get equal values
        # and one wins the slot, which is cheaper than a lock on every read.
        value = self._values[key] = self._decode(raw, key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self._values or (not self._whole and key in self._raw)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values if self._whole else self._raw)

    def __len__(self) -> int:
        return len(self._values if self._whole else self._raw)

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError("state is read-only in a serve op; return a dict of changes from an update op instead")

    def raw(self, key: str) -> bytes | None:
        """The committed bytes of ``key`` (None when absent)."""
        return self._raw.get(key)

    @property
    def decoder(self) -> Decode:
        """The function that turns stored bytes into values."""
        return self._decode

    @property
    def loaded(self) -> dict[str, Any]:
        """The values decoded so far: for a whole-state snapshot, all of them,
        as ``load_state`` gave them or as this process last set them."""
        return self._values

    @property
    def raw_items(self) -> dict[str, bytes]:
        """All committed bytes of this version, by key."""
        return self._raw

    def advance(self, version: int, changed: dict[str, bytes], deleted: tuple[str, ...] = ()) -> Snapshot:
        """A snapshot of ``version`` that differs from this one by ``changed``
        and ``deleted`` keys; decoded values of unchanged keys are shared."""
        raw = dict(self._raw)
        raw.update(changed)
        values = {k: v for k, v in self._values.items() if k not in changed}
        for key in deleted:
            raw.pop(key, None)
            values.pop(key, None)
        return Snapshot(version, raw, self._decode, instance_id=self.instance_id, values=values)

    def __repr__(self) -> str:
        return f"<Snapshot {self.instance_id!r} v{self.version} keys={sorted(self)}>"


class UpdateState(dict[str, Any]):
    """An update op's state: a dict whose keys are loaded lazily from the
    committed bytes (plus changes of earlier ops in the same batch).

    Assigning to it changes only this op's view; what the op returns is what
    gets committed."""

    __slots__ = ("_decode", "_raw", "instance_id")

    def __init__(self, raw: Mapping[str, bytes], decode: Decode, instance_id: str = "") -> None:
        super().__init__()
        self._raw = raw
        self._decode = decode
        self.instance_id = instance_id

    def __missing__(self, key: str) -> Any:
        raw = self._raw.get(key)
        if raw is None:
            raise KeyError(f"state has no key {key!r} (have: {sorted(self.keys())})")
        value = self._decode(raw, key)
        dict.__setitem__(self, key, value)
        return value

    def _load_all(self) -> None:
        for key in self._raw:
            if not dict.__contains__(self, key):
                self.__missing__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 - must load lazily

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._raw

    def keys(self) -> Any:
        self._load_all()
        return dict.keys(self)

    def values(self) -> Any:
        self._load_all()
        return dict.values(self)

    def items(self) -> Any:
        self._load_all()
        return dict.items(self)

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        return len(set(self._raw) | set(dict.keys(self)))

    def copy(self) -> dict[str, Any]:
        self._load_all()
        return dict(dict.items(self))

    def __repr__(self) -> str:
        return f"<UpdateState {self.instance_id!r} keys={sorted(set(self._raw) | set(dict.keys(self)))}>"


def overlay(base: Mapping[str, bytes], changes: Mapping[str, bytes]) -> Mapping[str, bytes]:
    """``base`` with ``changes`` on top, without copying either (a batch's
    ops each see the committed keys plus what the ops before them wrote)."""
    if not changes:
        return base
    return ChainMap(dict(changes), base)  # type: ignore[arg-type]


IMMUTABLE_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None)})
"""Types whose values an update op cannot change in place, so that a later
op of the same batch may be handed the very object instead of a fresh
decode of its bytes. Exact types: a subclass may be mutable."""
