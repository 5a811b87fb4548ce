"""ComponentSpec: a named state definition plus its route table of flows.

Pure definitions: no app, no store, no threads. The user's
:class:`tidal.Component` adds binding to an app and opening instances."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..constants import DEFAULT_CACHE_TTL
from ..exceptions import DefinitionError, InitStateError
from ..types import is_record_class
from .guards import Guard, as_guards, guarded
from .policies import DiscardPolicy, validate_policy
from .props import is_props_schema
from .triggers import EVENTS, InstanceRoute, Schedule, Trigger, check_cron, check_events, parse_every
from .variants import Params, Variants, variant_params

CacheMode = Literal["version", "ttl"]
"""``version``: a cached serve result is reused only while the state version
it was computed from is current (and at most ``cache_ttl`` seconds).
``ttl``: Motion's behaviour, reused for ``cache_ttl`` seconds whatever
updates happen meanwhile."""

_CACHE_MODES = ("version", "ttl")


@dataclass(frozen=True)
class ServeRoute:
    """The serve op of one flow."""

    key: str
    fn: Callable[..., Any]
    kind: Literal["sync", "async", "gen", "agen"]
    cache: CacheMode | None  # None: the component's mode
    guards: tuple[Guard, ...] = ()
    """The op's guardrails (``fn`` is then the op wrapped by them)."""


@dataclass(frozen=True)
class UpdateRoute:
    """One update op of a flow (a flow may have several, run in order)."""

    key: str
    fn: Callable[..., Any]
    discard_policy: DiscardPolicy
    discard_after: float | None

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", repr(self.fn))


def _kind(fn: Callable[..., Any]) -> Literal["sync", "async", "gen", "agen"]:
    if inspect.isasyncgenfunction(fn):
        return "agen"
    if inspect.iscoroutinefunction(fn):
        return "async"
    if inspect.isgeneratorfunction(fn):
        return "gen"
    return "sync"


def _keys(keys: str | Iterable[str], where: str) -> list[str]:
    out = [keys] if isinstance(keys, str) else list(keys)
    if not out:
        raise DefinitionError(f"{where}: give at least one flow key")
    for key in out:
        if not isinstance(key, str) or not key:
            raise DefinitionError(f"{where}: flow keys must be non-empty strings, got {key!r}")
    return out


def _check_relation(cls: type | None, where: str) -> None:
    if cls is not None and not is_record_class(cls):
        raise DefinitionError(f"{where}: on= / into= take a tidal.Record subclass, got {cls!r}")


def _annotated_props(fn: Callable[..., Any]) -> Any:
    """The TypedDict the op's props parameter is annotated with, if any."""
    import typing

    from typing_extensions import is_typeddict

    try:
        params = list(inspect.signature(fn).parameters)
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: no declared schema
        return None
    hint = hints.get(params[1]) if len(params) > 1 else None
    return hint if hint is not None and is_typeddict(hint) else None


def _check_signature(fn: Callable[..., Any], where: str) -> None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    positional = [
        p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params.values())
    if len(positional) != 2 and not (varargs and len(positional) < 2):
        raise DefinitionError(
            f"{where}: op {getattr(fn, '__name__', fn)!r} must take two arguments "
            f"(state, props), it takes {list(params)}"
        )


class ComponentSpec:
    """The definition of a named kind of stateful object with flows.

    ``init_state`` builds the first state of each instance; each flow key has
    at most one serve op (foreground, reads state) and any number of update ops
    (background, return a dict of state changes). Calling the component makes
    or reopens an instance::

        Counter = tidal.Component("Counter")

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
    ) -> None:
        if not isinstance(name, str) or not name or "/" in name:
            raise DefinitionError(f"Component name must be a non-empty string without '/', got {name!r}")
        if cache_ttl is None or cache_ttl < 0:
            raise DefinitionError(
                f"Component {name}: cache_ttl must be 0 (caching off) or a positive number of "
                f"seconds, got {cache_ttl!r}"
            )
        if cache_mode not in _CACHE_MODES:
            raise DefinitionError(f"Component {name}: cache_mode must be one of {_CACHE_MODES}, got {cache_mode!r}")
        self._name = name
        params = dict(params or {})
        self.variant_params: dict[str, Variants] = variant_params(params)
        """The params that are experiments (:class:`~tidal.core.variants.Variants`)."""
        self._params: dict[str, Any] = Params(self, params) if self.variant_params else params
        self._cache_ttl = cache_ttl
        self._cache_mode: CacheMode = cache_mode
        self._init_state_fn: Callable[..., dict[str, Any]] | None = None
        self._save_state_fn: Callable[[dict[str, Any]], Any] | None = None
        self._load_state_fn: Callable[[Any], dict[str, Any]] | None = None
        self.definition_id = uuid.uuid4().hex[:12]
        """Tells this definition from another of the same name in the process:
        ops queued through it carry it, so that it is this one's code that runs them."""
        self.serve_routes: dict[str, ServeRoute] = {}
        self.update_routes: dict[str, list[UpdateRoute]] = {}
        self.triggers: list[Trigger] = []
        self.schedules: list[Schedule] = []
        self.props_schemas: dict[str, Any] = {}
        """Flow key -> the pydantic model or TypedDict its props must fit."""

    # -- properties -------------------------------------------------------

    @property
    def name(self) -> str:
        """The component's name; instances are stored under it."""
        return self._name

    @property
    def params(self) -> dict[str, Any]:
        """Fixed parameters, for ops to read as ``C.params["x"]``; a
        :class:`~tidal.core.variants.Variants` param reads as the running
        instance's variant value."""
        return self._params

    @property
    def cache_ttl(self) -> float:
        """Seconds a serve result stays cached; 0 turns caching off."""
        return self._cache_ttl

    @property
    def cache_mode(self) -> CacheMode:
        """Default cache mode of this component's serve ops."""
        return self._cache_mode

    @property
    def save_state_fn(self) -> Callable[[dict[str, Any]], Any] | None:
        """The ``save_state`` function, if defined."""
        return self._save_state_fn

    @property
    def load_state_fn(self) -> Callable[[Any], dict[str, Any]] | None:
        """The ``load_state`` function, if defined."""
        return self._load_state_fn

    @property
    def whole_state(self) -> bool:
        """True when save_state / load_state are defined: the state is then
        stored as one value, converted by them, instead of key by key."""
        return self._save_state_fn is not None or self._load_state_fn is not None

    @property
    def runs_in_background(self) -> bool:
        """Whether executors have ops of this component to run."""
        return bool(self.update_routes) or any(t.serve for t in self.triggers)

    @property
    def counts_backlog(self) -> bool:
        """Whether an update op uses DiscardPolicy.NUM_NEW_UPDATES (claims
        must then count the ops queued behind each one)."""
        return any(
            r.discard_policy is DiscardPolicy.NUM_NEW_UPDATES for routes in self.update_routes.values() for r in routes
        )

    def _declare_props(self, keys: list[str], schema: Any, fn: Callable[..., Any], where: str) -> None:
        if schema is None:
            schema = _annotated_props(fn)
            if schema is None:
                return
        elif not is_props_schema(schema):
            raise DefinitionError(f"{where}: props= takes a pydantic model class or a TypedDict, got {schema!r}")
        for key in keys:
            known = self.props_schemas.get(key)
            if known is not None and known is not schema:
                raise DefinitionError(
                    f"Component {self._name}: flow {key!r} already declares props "
                    f"{getattr(known, '__name__', known)}; its ops must agree on one schema"
                )
        for key in keys:
            self.props_schemas[key] = schema

    def flow_keys(self) -> list[str]:
        """Every flow key with a serve or update op."""
        return sorted(set(self.serve_routes) | set(self.update_routes))

    # -- decorators -------------------------------------------------------

    def init_state(self, fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        """Decorate the function that returns a new instance's first state
        (a dict). It receives the instance's ``init_state_params`` as keyword
        arguments."""
        self._init_state_fn = fn
        return fn

    def save_state(self, fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        """Decorate a function that turns the state into something picklable
        (e.g. dropping a connection). Defining it stores the state as a whole."""
        self._save_state_fn = fn
        return fn

    def load_state(self, fn: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
        """Decorate the inverse of ``save_state``: rebuild the state dict."""
        self._load_state_fn = fn
        return fn

    def serve(
        self,
        keys: str | Iterable[str],
        *,
        cache: CacheMode | None = None,
        on: type | None = None,
        events: Iterable[str] = EVENTS,
        instance: InstanceRoute = "global",
        into: type | None = None,
        props: Any = None,
        guard: Iterable[Any] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate the serve op of one or more flows: ``fn(state, props)``,
        plain, async, generator or async generator. ``cache`` overrides the
        component's cache mode for these flows.

        ``props=Model`` (a pydantic model class or a TypedDict; a TypedDict
        annotation on the op's props parameter does the same) declares the
        props of these flows: ``run`` checks them (PropsValidationError
        naming the field) and the op receives the validated values as a
        dict; the HTTP API documents them in its OpenAPI schema. Without
        one, props are any dict, as in Motion.

        With ``on=RecordClass`` the flow also runs in the background whenever
        such a record changes (props ``record``, ``event``, ``old``), and with
        ``into=OtherRecord`` each result is stored as a record of that
        relation, with the triggering record's id.

        ``guard=[...]`` puts guardrails around the op (plain or async ones):
        each checks the props before and the result after, and blocks,
        redacts, retries or falls back (see :mod:`tidal.core.guards`; the
        built-ins are in ``tidal.evals.guards``)."""
        where = f"Component {self._name}.serve"
        flow_keys = _keys(keys, where)
        guards = as_guards(guard, where)
        if cache is not None and cache not in _CACHE_MODES:
            raise DefinitionError(f"{where}: cache must be one of {_CACHE_MODES}, got {cache!r}")
        trigger_events = check_events(events, where)
        if into is not None and on is None:
            raise DefinitionError(f"{where}: into= stores results of a relation trigger; give on= too")
        _check_relation(on, where)
        _check_relation(into, where)

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            _check_signature(fn, where)
            for key in flow_keys:
                if key in self.serve_routes:
                    other = self.serve_routes[key].fn
                    raise DefinitionError(
                        f"Component {self._name}: flow {key!r} already has a serve op "
                        f"({getattr(other, '__name__', other)!r}); a flow has at most one"
                    )
            self._declare_props(flow_keys, props, fn, where)
            kind = _kind(fn)
            if guards and kind in ("gen", "agen"):
                raise DefinitionError(
                    f"{where}: guard= needs the whole result to check; op {fn.__name__!r} is a generator "
                    "(make it return its result, or check the items yourself)"
                )
            for key in flow_keys:
                op = guarded(fn, guards, kind, f"{self._name}.{key}") if guards else fn
                self.serve_routes[key] = ServeRoute(key, op, kind, cache, guards)
                if on is not None:
                    self.triggers.append(Trigger(on, trigger_events, instance, key, serve=True, into=into))
            if on is not None:
                self._fires_changed()
            return fn

        return decorator

    def update(
        self,
        keys: str | Iterable[str] | None = None,
        discard_policy: DiscardPolicy = DiscardPolicy.NONE,
        discard_after: float | None = None,
        *,
        on: type | None = None,
        events: Iterable[str] = EVENTS,
        instance: InstanceRoute | Callable[[], Iterable[str]] = "global",
        every: str | float | None = None,
        cron: str | None = None,
        props: Any = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate an update op of one or more flows: ``fn(state, props)``
        (plain or ``async def``) returning a dict of changed keys (or None for
        no change). It runs in
        the background after the flow's serve op, with ``props.serve_result``
        set; ops of one instance run one at a time in enqueue order.

        It can also fire on its own: ``on=RecordClass`` (for ``events`` of
        that relation, routed by ``instance``: an id or a function of the
        record), or ``every="10m"`` / ``cron="0 * * * *"`` (``instance``: an
        id, ``"*"`` for every instance, or a function returning ids). Without
        ``keys`` the flow is named after the function. ``props=`` declares
        the flow's props, as for :meth:`serve`."""
        where = f"Component {self._name}.update"
        validate_policy(discard_policy, discard_after, where)
        trigger_events = check_events(events, where)
        _check_relation(on, where)
        if every is not None and cron is not None:
            raise DefinitionError(f"{where}: give every= or cron=, not both")
        period = parse_every(every, where) if every is not None else None
        cron_expr = check_cron(cron, where) if cron is not None else None
        if keys is None and on is None and period is None and cron_expr is None:
            raise DefinitionError(f"{where}: give the flow key(s) the op updates, or on= / every= / cron=")
        explicit = _keys(keys, where) if keys is not None else None

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            _check_signature(fn, where)
            if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
                raise DefinitionError(
                    f"{where}: update op {fn.__name__!r} must be a function (plain or async) returning a dict, "
                    "not a generator"
                )
            flow_keys = explicit or [fn.__name__]
            self._declare_props(flow_keys, props, fn, where)
            for key in flow_keys:
                self.update_routes.setdefault(key, []).append(UpdateRoute(key, fn, discard_policy, discard_after))
                if on is not None:
                    self.triggers.append(Trigger(on, trigger_events, instance, key))  # type: ignore[arg-type]
                if period is not None or cron_expr is not None:
                    self.schedules.append(Schedule(key, period, cron_expr, instance))  # type: ignore[arg-type]
            if on is not None or period is not None or cron_expr is not None:
                self._fires_changed()
            return fn

        return decorator

    def _fires_changed(self) -> None:
        """Hook, called when a trigger or schedule is added: nothing here;
        :class:`tidal.Component` registers with its app again."""

    # -- instances --------------------------------------------------------

    def make_init_state(self, params: dict[str, Any]) -> dict[str, Any]:
        """Run ``init_state`` with ``params``; an empty state without one."""
        if self._init_state_fn is None:
            return {}
        state = self._init_state_fn(**params)
        if not isinstance(state, dict):
            raise InitStateError(f"Component {self._name}: init_state must return a dict, got {type(state).__name__}")
        return state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name} flows={self.flow_keys()}>"
