"""Instance state: its keys (version, size, when written, a preview of the
value), the kept versions of one key, and rolling a key back to one of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..exceptions import NotFoundError
from .common import AsDict, check_instance

if TYPE_CHECKING:
    from ..app import App

PREVIEW_CHARS = 200
"""Characters of a value's repr shown in state listings."""


@dataclass(frozen=True)
class KeyState(AsDict):
    """One state key: the version it was last written at, its stored size."""

    key: str
    version: int
    size: int
    written_at: float | None
    """Epoch seconds; None when the store did not record it."""
    value: str | None = None
    """A repr preview of the value, when asked for."""


@dataclass(frozen=True)
class StateInfo(AsDict):
    """An instance's state at ``version``."""

    component: str
    instance: str
    version: int
    keys: list[KeyState]

    @property
    def size(self) -> int:
        """Bytes of every key together."""
        return sum(k.size for k in self.keys)


@dataclass(frozen=True)
class KeyVersionInfo(AsDict):
    """One version of a key; ``deleted`` when the key was deleted then."""

    version: int
    size: int
    written_at: float | None
    deleted: bool
    value: str | None = None
    current: bool = False


def _preview(app: App, comp: str, instance: str, raw: bytes, key: str, chars: int = PREVIEW_CHARS) -> str:
    try:
        text = repr(app.decoder(comp, instance)(raw, key))
    except Exception as exc:  # show what is wrong instead of failing the whole listing
        return f"<unreadable: {exc}>"
    return text if len(text) <= chars else text[: chars - 3] + "..."


def state(app: App, comp: str, instance: str, *, values: bool = False) -> StateInfo:
    """The keys of an instance's state, with a preview of each value when
    ``values`` (which reads and decodes every value)."""
    version = check_instance(app, comp, instance)
    infos = app.store.describe_state(comp, instance)
    if infos is None:  # deleted meanwhile
        raise NotFoundError("instance", f"{comp}/{instance}", app.store.list_instances(comp), where=app.store.url)
    raw: dict[str, bytes] = {}
    if values:
        read = app.store.read_state(comp, instance)
        if read is not None:
            raw = read.changed
    version = max([version, *(i.version for i in infos)])
    keys = [
        KeyState(
            i.key,
            i.version,
            i.size,
            i.written_at,
            _preview(app, comp, instance, raw[i.key], i.key) if i.key in raw else None,
        )
        for i in infos
    ]
    return StateInfo(comp, instance, version, keys)


def key_history(
    app: App, comp: str, instance: str, key: str, *, limit: int | None = None, values: bool = True
) -> list[KeyVersionInfo]:
    """The versions of one state key, newest (the current one) first."""
    check_instance(app, comp, instance)
    entries = app.store.key_history(comp, instance, key, limit)
    if not entries:
        live = [k.key for k in app.store.describe_state(comp, instance) or []]
        raise NotFoundError("state key", key, live, where=f"{comp}/{instance}")
    return [
        KeyVersionInfo(
            version=e.version,
            size=0 if e.value is None else len(e.value),
            written_at=e.written_at,
            deleted=e.value is None,
            value=_preview(app, comp, instance, e.value, key) if values and e.value is not None else None,
            current=n == 0,
        )
        for n, e in enumerate(entries)
    ]


@dataclass(frozen=True)
class RollbackResult(AsDict):
    """A key set back to the value it had at ``restored_version``, committed
    as ``new_version`` of the instance."""

    component: str
    instance: str
    key: str
    restored_version: int
    new_version: int
    deleted: bool
    """True when the restored "value" is the key's deletion."""


def rollback(app: App, comp: str, instance: str, key: str, version: int) -> RollbackResult:
    """Restore ``key`` to its value at ``version`` as a new version of the
    instance, in one fenced commit: if anything commits between the read of
    the history and this commit, it raises VersionConflictError and writes
    nothing. History stays linear (the rollback is one more entry)."""
    current = check_instance(app, comp, instance)
    entries = app.store.key_history(comp, instance, key)
    if not entries:
        live = [k.key for k in app.store.describe_state(comp, instance) or []]
        raise NotFoundError("state key", key, live, where=f"{comp}/{instance}")
    target = next((e for e in entries if e.version == version), None)
    if target is None:
        raise NotFoundError("version", str(version), [str(e.version) for e in entries], where=f"history of {key!r}")
    if target.value is not None:
        # Restoring bytes that fail their HMAC would break every later read of the instance.
        app.verify_state(comp, instance, key, target.value)
    if target.value is None:
        new = app.store.commit(comp, instance, {}, deleted=[key], expected_version=current)
    else:
        new = app.store.commit(comp, instance, {key: target.value}, expected_version=current)
    registered = app.components.get(comp)
    if registered is not None:  # this process's snapshot and cached results of the instance
        app.forget(registered, instance)
    app.notify_committed()
    return RollbackResult(comp, instance, key, version, new, target.value is None)
