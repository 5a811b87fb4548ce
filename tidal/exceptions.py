"""Every error Tidal raises derives from :class:`TidalError`.

::

    TidalError
    ├── ConfigError                 bad store URL, missing extra, bad settings
    ├── DefinitionError (ValueError)  a component or op defined wrongly
    ├── UnknownFlowError (KeyError)   run() on a flow key with no ops
    ├── PropsValidationError (ValueError)  props failing the flow's declared schema
    ├── MissingPropError (KeyError)   an op read a prop the caller did not give
    ├── StateError
    │   ├── InitStateError          init_state did not return a dict
    │   ├── StateSerializationError   a state value or payload cannot be stored
    │   └── StateIntegrityError     stored bytes failed their HMAC check
    ├── UpdateError
    │   ├── UpdateReturnError       an update op returned something not a dict
    │   └── UpdateFailedError (RuntimeError)  flush_update found failed update ops
    ├── LeaseLostError              a worker's lease expired before it committed
    ├── VersionConflictError        state changed between read and commit
    ├── StoreError                  the store is closed or unusable
    ├── RecordValidationError (ValueError)  a record failed its schema
    ├── RecordNotFoundError (KeyError)      update/delete of a missing record
    ├── NotFoundError (LookupError)   an operator named a component, instance,
    │                               key, version or op that does not exist
    ├── SchemaError                 a relation's class no longer fits its table
    ├── GuardrailError              a serve op's guard blocked its input or output, or raised
    └── ReadOnlyError (PermissionError)  a write through read-only app.sql
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


class TidalError(Exception):
    """Base class of every error raised by Tidal."""


class ConfigError(TidalError):
    """Raised when settings, a store URL or an optional dependency is wrong."""


class DefinitionError(TidalError, ValueError):
    """Raised when a component, op or policy is defined in a way Tidal cannot run."""


class UnknownFlowError(TidalError, KeyError):
    """Raised when a flow key has neither a serve nor an update op."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PropsValidationError(TidalError, ValueError):
    """Raised when props fail the schema a flow declares (``props=`` on the
    decorator, or a TypedDict annotation on the op's props); nothing ran.

    ``errors`` lists each problem as (field path, message)."""

    def __init__(self, message: str, errors: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


class MissingPropError(TidalError, KeyError):
    """Raised when an op reads ``props["key"]`` and the caller gave no such
    prop (a caller's mistake, not the op's: the HTTP API answers 422)."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StateError(TidalError):
    """Base class of errors about stored state."""


class InitStateError(StateError, TypeError):
    """Raised when ``init_state`` (or a migration) does not return a dict."""


class StateSerializationError(StateError, TypeError):
    """Raised when a value cannot be serialised for the store."""


class StateIntegrityError(StateError):
    """Raised when stored bytes fail their HMAC check: they were not written
    by a process holding this app's secret key, so they are never unpickled."""


class UpdateError(TidalError):
    """Base class of errors about update ops."""


class UpdateReturnError(UpdateError, TypeError):
    """Raised (and recorded on the op) when an update op returns a non-dict."""


@dataclass(frozen=True)
class FailedOp:
    """An update op that raised, as the store keeps it (with its traceback)
    until it is retried or dropped: what ``UpdateFailedError.failures``,
    ``store.failures`` and ``tidal.admin.failures`` give."""

    op_id: int
    component: str
    instance: str
    flow: str
    error: str
    """The traceback of the exception the op raised."""
    failed_at: float

    @property
    def summary(self) -> str:
        """The traceback's last line."""
        lines = self.error.strip().splitlines()
        return lines[-1] if lines else ""

    def as_dict(self) -> dict[str, object]:
        """This op as JSON-ready data."""
        return asdict(self)


class UpdateFailedError(UpdateError, RuntimeError):
    """Raised by ``flush_update`` when update ops it waited for failed.

    A RuntimeError too, since Motion raises one there and Motion code catches it.

    The state is as if the failed ops had never run; ``failures`` holds each
    one with its traceback."""

    def __init__(self, failures: list[FailedOp]) -> None:
        self.failures = failures
        first = failures[0]
        last_line = first.error.strip().splitlines()[-1] if first.error else ""
        super().__init__(
            f"{len(failures)} update op(s) failed on {first.component}/{first.instance}; "
            f"first: flow {first.flow!r} op {first.op_id}: {last_line}"
        )


class LeaseLostError(TidalError):
    """Raised when a worker tries to commit after its lease expired or was
    taken over: the commit is refused so that the op is applied only once."""


class VersionConflictError(TidalError):
    """Raised when a commit expected a state version that is no longer current."""


class StoreError(TidalError):
    """Raised when the store cannot be used (closed, corrupt, misconfigured)."""


class RecordValidationError(TidalError, ValueError):
    """Raised when a record fails its relation's schema; nothing is written.

    ``errors`` lists each problem as (record index, field, message)."""

    def __init__(self, message: str, errors: list[tuple[int, str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


class RecordNotFoundError(TidalError, KeyError):
    """Raised when updating or deleting a record id that is not stored."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotFoundError(TidalError, LookupError):
    """Raised when an operator (CLI, HTTP API, dashboard) names a component,
    instance, state key, version or failed op that does not exist. ``kind``
    and ``name`` say what was asked for, ``known`` what exists instead."""

    def __init__(self, kind: str, name: str, known: list[str] | None = None, *, where: str = "") -> None:
        self.kind = kind
        self.name = name
        self.known = list(known or [])
        message = f"no {kind} {name}" + (f" in {where}" if where else "")
        if known is not None:
            shown = ", ".join(self.known[:20]) + (", ..." if len(self.known) > 20 else "")
            message += f"; known: {shown}" if self.known else "; there are none"
        super().__init__(message)


class SchemaError(TidalError):
    """Raised when a Record class is incompatible with its stored table."""


class GuardrailError(TidalError):
    """Raised when a guard of a serve op (``guard=[...]``) blocks its props
    or its result, or when the guard itself raised. ``guard`` names it,
    ``stage`` is ``input`` or ``output``, ``detail`` says what it found."""

    def __init__(self, message: str, guard: str, stage: str, detail: str) -> None:
        super().__init__(message)
        self.guard = guard
        self.stage = stage
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.guard, self.stage, self.detail))


class ReadOnlyError(TidalError, PermissionError):
    """Raised when SQL run through ``app.sql`` without ``write=True`` tries to
    change the database; nothing was changed."""
