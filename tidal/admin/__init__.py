"""Operations: the one place the CLI, the HTTP API and the dashboard read
operational data from, and act through.

Every function takes an :class:`~tidal.App` and returns frozen dataclasses
whose ``as_dict()`` is JSON-ready. Asking for a component, instance, state
key, version or failed op that does not exist raises
:class:`~tidal.exceptions.NotFoundError`, which names what does exist::

    from tidal import admin

    for key in admin.state(app, "Prefs", "user-42").keys:
        print(key.key, key.version, key.size)
    admin.rollback(app, "Prefs", "user-42", "summary", version=3)

The runs log side (tail and statistics) lives in :mod:`tidal.admin.runs_log`
and is re-exported here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..engine.freshness import Freshness, freshness
from ..exceptions import NotFoundError
from .runs_log import RunInfo, RunStats, TimelineBucket, run_stats, run_timeline, runs

if TYPE_CHECKING:
    from ..app import App

__all__ = [
    "ComponentInfo",
    "FailureInfo",
    "FlowInfo",
    "Freshness",
    "InstanceInfo",
    "KeyState",
    "KeyVersionInfo",
    "RollbackResult",
    "RetryResult",
    "RunInfo",
    "RunStats",
    "SqlResult",
    "StateInfo",
    "TimelineBucket",
    "component",
    "components",
    "drop_failed",
    "failures",
    "instance",
    "instances",
    "key_history",
    "queues",
    "retry_failed",
    "rollback",
    "run_stats",
    "run_timeline",
    "runs",
    "sql",
    "state",
]

PREVIEW_CHARS = 200
"""Characters of a value's repr shown in state listings."""


class _Dict:
    def as_dict(self) -> dict[str, Any]:
        """This object as JSON-ready data."""
        return asdict(self)  # type: ignore[call-overload,no-any-return]


# -- components and instances --------------------------------------------------


@dataclass(frozen=True)
class FlowInfo(_Dict):
    """One flow of a component: what runs when it is called or fired."""

    name: str
    serve: str | None
    """The serve op's function name, None if the flow has no serve op."""
    serve_kind: str | None
    """``sync``, ``async``, ``gen`` or ``agen``."""
    updates: list[str]
    """Update ops' function names, in the order they run."""
    triggers: list[str]
    """Relations (and events) that fire the flow, as ``relation:event,event``."""
    schedules: list[str]
    """``every <seconds>s`` or ``cron <expr>``."""


@dataclass(frozen=True)
class ComponentInfo(_Dict):
    """A component of the app and its flows."""

    name: str
    flows: list[FlowInfo]
    instances: int


@dataclass(frozen=True)
class InstanceInfo(_Dict):
    """An instance and its current state version."""

    component: str
    instance: str
    version: int


def components(app: App) -> list[ComponentInfo]:
    """Every component registered with ``app``, by name."""
    return [component(app, name) for name in sorted(app.components)]


def component(app: App, name: str) -> ComponentInfo:
    """One registered component with its flows."""
    comp = app.components.get(name)
    if comp is None:
        raise NotFoundError("component", name, sorted(app.components), where=f"app {app.name!r}")
    flows = []
    keys = (
        set(comp.serve_routes)
        | set(comp.update_routes)
        | {t.flow for t in comp.triggers}
        | {s.flow for s in comp.schedules}
    )
    for key in sorted(keys):
        serve = comp.serve_routes.get(key)
        flows.append(
            FlowInfo(
                name=key,
                serve=None if serve is None else getattr(serve.fn, "__name__", repr(serve.fn)),
                serve_kind=None if serve is None else serve.kind,
                updates=[getattr(route.fn, "__name__", route.name) for route in comp.update_routes.get(key, [])],
                triggers=[
                    f"{t.relation.__name__}:{','.join(t.events)}" + (" (serve)" if t.serve else "")
                    for t in comp.triggers
                    if t.flow == key
                ],
                schedules=[
                    f"every {s.every:g}s" if s.every is not None else f"cron {s.cron}"
                    for s in comp.schedules
                    if s.flow == key
                ],
            )
        )
    return ComponentInfo(name, flows, len(app.store.list_instances(name)))


def _check_component(app: App, name: str) -> list[str]:
    """The component's instance ids; NotFoundError if the app neither
    defines the component nor has instances of it."""
    ids = app.store.list_instances(name)
    if not ids and name not in app.components:
        raise NotFoundError("component", name, sorted(app.components), where=f"app {app.name!r}")
    return ids


def _check_instance(app: App, comp: str, instance: str) -> int:
    version = app.store.get_version(comp, instance)
    if version is None:
        raise NotFoundError("instance", f"{comp}/{instance}", app.store.list_instances(comp), where=app.store.url)
    return version


def instance(app: App, comp: str, instance_id: str) -> InstanceInfo:
    """One instance with its current state version."""
    return InstanceInfo(comp, instance_id, _check_instance(app, comp, instance_id))


def instances(app: App, comp: str) -> list[InstanceInfo]:
    """The instances of ``comp`` with their state versions, by id."""
    out = []
    for instance in _check_component(app, comp):
        version = app.store.get_version(comp, instance)
        if version is not None:  # deleted meanwhile
            out.append(InstanceInfo(comp, instance, version))
    return out


# -- state -----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyState(_Dict):
    """One state key: the version it was last written at, its stored size."""

    key: str
    version: int
    size: int
    written_at: float | None
    """Epoch seconds; None when the store did not record it."""
    value: str | None = None
    """A repr preview of the value, when asked for."""


@dataclass(frozen=True)
class StateInfo(_Dict):
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
class KeyVersionInfo(_Dict):
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
    version = _check_instance(app, comp, instance)
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
    _check_instance(app, comp, instance)
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
class RollbackResult(_Dict):
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
    current = _check_instance(app, comp, instance)
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


# -- queues and failed ops ---------------------------------------------------------


@dataclass(frozen=True)
class FailureInfo(_Dict):
    """A failed update op, kept with its traceback until retried or dropped."""

    op_id: int
    component: str
    instance: str
    flow: str
    error: str
    failed_at: float

    @property
    def summary(self) -> str:
        """The traceback's last line."""
        lines = self.error.strip().splitlines()
        return lines[-1] if lines else ""


@dataclass(frozen=True)
class RetryResult(_Dict):
    """A failed op queued again as ``new_op_id``."""

    component: str
    instance: str
    op_id: int
    new_op_id: int


def queues(app: App, comps: list[str] | None = None, window: timedelta = timedelta(minutes=5)) -> list[Freshness]:
    """Queue depth, failures and update lag per component (see
    :func:`tidal.freshness.freshness`)."""
    for name in comps or []:
        if name not in app.components:
            _check_component(app, name)
    return freshness(app, comps, window)


def failures(
    app: App, comp: str, *, instance: str | None = None, flow: str | None = None, limit: int | None = 100
) -> list[FailureInfo]:
    """Failed ops of ``comp`` (of one instance, of one flow), newest first."""
    if instance is not None:
        _check_instance(app, comp, instance)
    else:
        _check_component(app, comp)
    return [
        FailureInfo(f.op_id, f.component, f.instance, f.flow, f.error, f.failed_at)
        for f in app.store.list_failures(comp, instance=instance, flow=flow, limit=limit)
    ]


def _find_failure(app: App, comp: str, op_id: int, instance: str | None) -> str:
    found = app.store.list_failures(comp, instance=instance)
    for f in found:
        if f.op_id == op_id:
            return f.instance
    where = f"the failed ops of {comp}" + (f"/{instance}" if instance else "")
    raise NotFoundError("failed op", str(op_id), [str(f.op_id) for f in found], where=where)


def retry_failed(app: App, comp: str, op_id: int, *, instance: str | None = None) -> RetryResult:
    """Queue a failed op again (same flow and payload, a fresh id, at the
    tail of its instance's queue); a worker then runs it."""
    _check_component(app, comp)
    owner = _find_failure(app, comp, op_id, instance)
    new_id = app.store.retry_failed(comp, owner, op_id)
    if new_id is None:  # retried or dropped by someone else meanwhile
        raise NotFoundError("failed op", str(op_id), where=f"the failed ops of {comp}/{owner}")
    app.notify_enqueued()
    return RetryResult(comp, owner, op_id, new_id)


def drop_failed(app: App, comp: str, op_id: int, *, instance: str | None = None) -> FailureInfo:
    """Forget a failed op; returns it as it was."""
    _check_component(app, comp)
    owner = _find_failure(app, comp, op_id, instance)
    kept = next(f for f in app.store.failures(comp, owner) if f.op_id == op_id)
    if not app.store.drop_failed(comp, owner, op_id):
        raise NotFoundError("failed op", str(op_id), where=f"the failed ops of {comp}/{owner}")
    return FailureInfo(kept.op_id, comp, owner, kept.flow, kept.error, kept.failed_at)


# -- SQL -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlResult(_Dict):
    """Rows of a read-only query; values are JSON-ready (others as text)."""

    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def sql(app: App, query: str, params: dict[str, Any] | None = None) -> SqlResult:
    """Run read-only SQL with bound parameters over the app's relations
    (``runs`` and ``feedback`` included)."""
    got = app.sql(query, params or {})
    return SqlResult(list(got.columns), [[_jsonable(v) for v in row.values()] for row in got])


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value
