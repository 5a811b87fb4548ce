"""What the running code runs under: the run an op belongs to, and the scope
of the caller who asked for it.

Both are context variables, so they follow threads, asyncio tasks and the
ops' own calls without being passed around. The engine sets the run around
every op it calls; the HTTP server sets the caller's scope around a request.
Code inside an op (a model call, a tool call) reads them to say which run
it belongs to and what the caller may reach.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, NamedTuple, Protocol


class CurrentRun(NamedTuple):
    """The run an op is part of (its row in ``runs`` has this ``id``)."""

    id: str
    component: str
    instance: str
    flow: str
    kind: str
    """``serve`` or ``update``."""
    runtime: Any
    """The app (``tidal.engine.runtime.Runtime``) whose op this is: where
    what the op does is recorded, cached and rate-limited."""


class CallerScope(Protocol):
    """What a caller may reach (the server's ``Scope`` is one)."""

    def allows(self, component: str, instance: str | None = None, *, write: bool = False) -> bool: ...


current_run: ContextVar[CurrentRun | None] = ContextVar("tidal_current_run", default=None)
"""The run of the op now running in this context; None outside ops."""

caller_scope: ContextVar[CallerScope | None] = ContextVar("tidal_caller_scope", default=None)
"""The scope of the HTTP caller whose request this code serves; None when
unrestricted (embedded calls, or no auth configured)."""


def run() -> CurrentRun | None:
    """The run of the op now running here, if any."""
    return current_run.get()
