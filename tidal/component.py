"""Component: the user's handle on a component definition, bound to an app,
that opens instances (``Counter("c1")``)."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .constants import DEFAULT_CACHE_TTL
from .core.component import CacheMode, ComponentSpec
from .exceptions import DefinitionError
from .instance import Instance

if TYPE_CHECKING:
    from .app import App

_defined: weakref.WeakSet[Component] = weakref.WeakSet()

_default_app: list[Callable[[], App]] = []
"""The function that gives the default app. tidal.app installs it when it is
imported: the app module builds components, so this one must not import it
back (that would be a cycle)."""


def use_default_app(provider: Callable[[], App]) -> None:
    """Make ``provider`` what components without an app bind to."""
    _default_app[:] = [provider]


def defined_components() -> list[Component]:
    """Every component defined in this process (what ``tidal worker`` serves)."""
    return sorted(_defined, key=lambda c: c.name)


@dataclass(frozen=True)
class FlowRef:
    """A flow of a component, named to be run by someone else (a model's
    tool call): see :meth:`Component.flow`."""

    component: Component
    flow: str
    instance: str | None = None
    description: str | None = None


class Component(ComponentSpec):
    """A named kind of stateful object with flows.

    ``init_state`` builds the first state of each instance; each flow key has
    at most one serve op (foreground, reads state) and any number of update ops
    (background, return a dict of state changes). Calling the component makes
    or reopens an instance::

        Counter = Component("Counter")

        @Counter.init_state
        def setup():
            return {"n": 0}

        @Counter.serve("add")
        def total(state, props):
            return state["n"] + props["k"]

        @Counter.update("add")
        def add(state, props):
            return {"n": state["n"] + props["k"]}

        with Counter("c1") as c:
            c.run("add", props={"k": 2}, flush_update=True)
    """

    def __init__(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        *,
        cache_mode: CacheMode = "version",
        app: App | None = None,
    ) -> None:
        super().__init__(name, params, cache_ttl, cache_mode=cache_mode)
        self._app = app
        self._follows_default = False
        """True when the component took the default app, rather than being bound."""
        if app is not None:
            app.register(self)
        _defined.add(self)

    @property
    def app(self) -> App:
        """The app this component runs in (the default app unless bound).
        A component on the default app moves to the new default once that
        app is closed, as :func:`tidal.default_app` itself does."""
        app = self._app
        if app is None or (app.closed and self._follows_default):
            app = self._app = _default_app[0]()
            self._follows_default = True
            app.register(self)
        return app

    @property
    def bound(self) -> bool:
        """Whether the component has an app yet (it binds on first use)."""
        return self._app is not None

    def bind(self, app: App) -> None:
        """Run this component in ``app`` (before any instance is opened)."""
        self._app = app
        self._follows_default = False
        app.register(self)

    def _fires_changed(self) -> None:
        # A trigger or schedule added after the app opened its database or
        # started its helpers: register again, so that the relation is
        # watched (its changes reach the outbox) and the helpers run.
        if self._app is not None:
            self._app.register(self)

    def flow(self, key: str, *, instance: str | None = None, description: str | None = None) -> FlowRef:
        """This component's flow ``key`` as a thing to hand on, e.g. to a
        model as a tool (``llm.chat(messages, tools=[Orders.flow("status")])``).
        ``instance`` binds the instance it runs on (else the caller, or the
        model, names one)."""
        if key not in self.serve_routes and key not in self.update_routes:
            raise DefinitionError(f"component {self.name} has no flow {key!r}; known flows: {self.flow_keys()}")
        return FlowRef(self, key, instance, description)

    def __call__(
        self,
        instance_id: str = "",
        init_state_params: dict[str, Any] | None = None,
        logging_level: str = "WARNING",
        update_task_type: Literal["thread", "process"] = "thread",
        disable_update_task: bool = False,
        redis_socket_timeout: int = 60,
        config_path: str = "",
        flush_on_exit: bool = False,
    ) -> Instance:
        """Open the instance ``instance_id`` (a new random id if empty),
        creating its state with ``init_state(**init_state_params)`` if it does
        not exist yet. ``logging_level`` sets the level of Tidal's loggers
        (``tidal.*``), as Motion does for its own; ``redis_socket_timeout``
        and ``config_path`` are accepted for Motion compatibility (the store
        URL says where Redis is)."""
        del redis_socket_timeout, config_path
        level = logging.getLevelName(logging_level.upper()) if isinstance(logging_level, str) else None
        if not isinstance(level, int):
            raise DefinitionError(
                f"logging_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; got {logging_level!r}"
            )
        logging.getLogger("tidal").setLevel(level)
        return Instance(
            self,
            instance_id,
            init_state_params=init_state_params or {},
            disable_update_task=disable_update_task,
            update_task_type=update_task_type,
            flush_on_exit=flush_on_exit,
        )
