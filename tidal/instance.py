"""Instance: one persisted state of a component and the API to run its flows."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal

from .constants import FLUSH_POLL_SECONDS
from .context import CurrentRun, current_run
from .core.props import Properties, validate_props
from .engine import serving
from .engine.executor import Executor
from .engine.runlog import Entry
from .exceptions import (
    DefinitionError,
    TidalError,
    UnknownFlowError,
    UpdateFailedError,
    VersionConflictError,
)

if TYPE_CHECKING:
    from .app import App
    from .component import Component
    from .core.component import ServeRoute
    from .core.state import Snapshot

log = logging.getLogger("tidal.instance")

Started = tuple[float, float, str]
"""When a run started (``perf_counter``, epoch seconds) and its run id."""


class Instance:
    """A component instance: its own persisted, versioned state.

    Made by calling the component (``Counter("c1")``). ``run`` executes a
    flow's serve op now, against the latest committed state, and queues its
    update ops; those run in the background, one at a time per instance, in
    the order they were queued."""

    def __init__(
        self,
        component: Component,
        instance_id: str = "",
        *,
        init_state_params: dict[str, Any] | None = None,
        disable_update_task: bool = False,
        update_task_type: Literal["thread", "process"] = "thread",
        flush_on_exit: bool = False,
    ) -> None:
        if update_task_type not in ("thread", "process"):
            raise DefinitionError(f"update_task_type must be 'thread' or 'process', got {update_task_type!r}")
        if not isinstance(instance_id, str):
            raise DefinitionError(f"instance_id must be a string, got {type(instance_id).__name__}")
        self.component = component
        self.app: App = component.app
        self._id = instance_id or uuid.uuid4().hex[:16]
        self.disable_update_task = disable_update_task
        self.update_task_type = update_task_type
        self.flush_on_exit = flush_on_exit
        self._closed = False
        self._local = threading.local()
        store = self.app.store
        name = component.name
        self.app.ensure_instance(component, self._id, init_state_params)
        # Failures of ops queued before this handle existed are history, not
        # news: flush_update reports only those of later ops.
        self._reported_upto = store.last_op_id(name, self._id)
        self._reported_ops: set[int] = set()  # reported by flush_update(flow) above the watermark
        if component.update_routes and not disable_update_task:
            if update_task_type == "process":
                self.app.start_process_worker()
            else:
                self.app.executor  # noqa: B018 - starts this process's update threads

    # -- identity ---------------------------------------------------------

    @property
    def instance_id(self) -> str:
        """The id this instance's state is stored under."""
        return self._id

    @property
    def instance_name(self) -> str:
        """``Component__id``, as Motion names instances."""
        return f"{self.component.name}__{self._id}"

    def __repr__(self) -> str:
        return f"<Instance {self.component.name}/{self._id}>"

    # -- flows ------------------------------------------------------------

    def _routes(self, flow_key: str) -> tuple[ServeRoute | None, bool]:
        if self._closed:
            raise TidalError(f"cannot run {self!r}, as the instance has been closed")
        serve = self.component.serve_routes.get(flow_key)
        has_updates = flow_key in self.component.update_routes
        if serve is None and not has_updates:
            raise UnknownFlowError(
                f"component {self.component.name} has no flow {flow_key!r}; known flows: {self.component.flow_keys()}"
            )
        return serve, has_updates

    def check_props(self, flow_key: str, props: dict[str, Any] | None) -> dict[str, Any] | None:
        """``props`` validated against the flow's declared schema (if it has
        one); PropsValidationError names each bad field."""
        schema = self.component.props_schemas.get(flow_key)
        if schema is None:
            return props
        return validate_props(schema, props or {}, f"{self.component.name}.{flow_key}")

    def _prepare(
        self, serve: ServeRoute | None, props: dict[str, Any] | None, ignore_cache: bool
    ) -> tuple[Properties, Snapshot | None, Any, bool, Any]:
        """Props, snapshot, cache key, hit?, cached result. With
        ``ignore_cache`` (also set by ``force_refresh``) nothing is looked up,
        but the recomputed result still replaces the cached one, as in Motion."""
        if props is not None and not isinstance(props, dict):
            raise TypeError(f"props must be a dict, got {type(props).__name__}")
        p = Properties(props) if props else Properties()
        if serve is None:
            return p, None, None, False, None
        snap = self.app.snapshot(self.component, self._id)
        key = None
        if self.component.cache_ttl:
            key = serving.cache_key(self.component, self._id, serve, p, snap)
            if key is not None and not ignore_cache:
                hit, result = serving.lookup(self.app, self.component, key, p)
                if hit:
                    return p, snap, key, True, result
        return p, snap, key, False, None

    def _finish(
        self,
        flow_key: str,
        has_updates: bool,
        p: Properties,
        key: Any,
        result: Any,
        hit: bool,
        snap: Snapshot | None,
        started: Started,
    ) -> None:
        if key is not None and not hit:
            serving.remember(self.app, self.component, key, p, result)
        if has_updates:
            p._serve_result = result
            payload = self.app.codec.dumps(
                (flow_key, p, "", self.component.definition_id),
                what=("props of flow", flow_key, "(with serve_result)"),
            )
            self.app.store.enqueue(self.component.name, self._id, flow_key, payload)
            self.app.notify_enqueued(self.component.name, self.instance_id)
        self._log(flow_key, p, result, hit, snap, started)

    def _log(
        self,
        flow_key: str,
        p: Properties,
        result: Any,
        hit: bool,
        snap: Snapshot | None,
        started: Started,
        error: str | None = None,
    ) -> None:
        """Record this run in the runs log and remember its id for this thread."""
        latency = time.perf_counter() - started[0]
        runlog = self.app.runlog
        if runlog is None:
            return
        run_id = started[2] or runlog.new_id()
        # The Entry's fields in order, made without NamedTuple's __new__ (a
        # fifth of its cost with keywords): this is every serve's path.
        runlog.record(
            tuple.__new__(
                Entry,
                (
                    run_id,  # id
                    self.component.name,  # component
                    self._id,  # instance
                    flow_key,  # flow
                    "serve",  # kind
                    "ok" if error is None else "error",  # status
                    p,  # props
                    result,  # result
                    hit,  # cached
                    snap.version if snap is not None else None,  # version_read
                    None,  # version_written
                    None,  # op_id
                    started[1],  # started
                    latency,  # latency
                    error,  # error
                    None,  # waited
                    None if not self.component.variant_params else self.app.variants(self.component, self._id),
                ),
            )
        )
        self._local.run_id = run_id

    def _failed(self, flow_key: str, p: Properties, snap: Snapshot | None, started: Started) -> None:
        self._log(flow_key, p, None, False, snap, started, traceback.format_exc())

    def _start(self) -> Started:
        """When a serve run starts, and its id (known before the op runs, so
        that a model call in it can name its run: see :meth:`_run`)."""
        runlog = self.app.runlog
        return time.perf_counter(), time.time(), runlog.new_id() if runlog is not None else ""

    def _run(self, flow_key: str, started: Started) -> CurrentRun:
        """The run a serve op runs in (made only when the op runs: a cache
        hit needs none)."""
        return CurrentRun(started[2], self.component.name, self._id, flow_key, "serve", self.app)

    @property
    def last_run_id(self) -> str | None:
        """The run id of this thread's latest run on this instance (to give
        ``app.feedback`` on it); None before the first run or with the runs
        log off."""
        return getattr(self._local, "run_id", None)

    def run(
        self,
        flow_key: str,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
    ) -> Any:
        """Run a flow: its serve op's result (a list of all items for a
        generator serve op), with its update ops queued.

        ``ignore_cache`` recomputes even if a cached result exists;
        ``force_refresh`` first waits for queued updates so the serve op sees
        them; ``flush_update`` waits for this run's updates before returning."""
        serve, has_updates = self._routes(flow_key)
        props = self.check_props(flow_key, props)
        if force_refresh:
            self._wait(None)
        started = self._start()
        p, snap, key, hit, result = self._prepare(serve, props, ignore_cache or force_refresh)
        if serve is not None and not hit:
            assert snap is not None
            token = current_run.set(self._run(flow_key, started))
            try:
                result = serving.call_sync(serve, snap, p)
            except Exception:
                self._failed(flow_key, p, snap, started)
                raise
            finally:
                current_run.reset(token)
        self._finish(flow_key, has_updates, p, key, result, hit, snap, started)
        if flush_update and has_updates:
            self.flush_update(flow_key)
        return result

    async def arun(
        self,
        flow_key: str,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
    ) -> Any:
        """``run`` for async code: awaits async serve ops and collects async
        generators; waiting for updates happens off the event loop."""
        serve, has_updates = self._routes(flow_key)
        props = self.check_props(flow_key, props)
        if force_refresh:
            await asyncio.to_thread(self._wait, None)
        started = self._start()
        p, snap, key, hit, result = self._prepare(serve, props, ignore_cache or force_refresh)
        if serve is not None and not hit:
            assert snap is not None
            token = current_run.set(self._run(flow_key, started))
            try:
                result = await serving.call_async(serve, snap, p)
            except Exception:
                self._failed(flow_key, p, snap, started)
                raise
            finally:
                current_run.reset(token)
        self._finish(flow_key, has_updates, p, key, result, hit, snap, started)
        if flush_update and has_updates:
            await asyncio.to_thread(self.flush_update, flow_key)
        return result

    def gen(
        self,
        flow_key: str,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
    ) -> Iterator[Any]:
        """Run a flow and yield a generator serve op's items as they come
        (other serve ops yield their one result). Updates are queued once the
        generator is exhausted, with the list of items as ``serve_result``."""
        serve, has_updates = self._routes(flow_key)
        if serve is None or serve.kind != "gen":
            result = self.run(flow_key, props, ignore_cache, force_refresh, flush_update)
            yield from (result if serve is not None and serve.kind == "agen" else [result])
            return
        props = self.check_props(flow_key, props)
        if force_refresh:
            self._wait(None)
        started = self._start()
        p, snap, key, hit, result = self._prepare(serve, props, ignore_cache or force_refresh)
        if hit:
            yield from result
        else:
            assert snap is not None
            items: list[Any] = []
            try:
                yield from serving.within(self._run(flow_key, started), serving.iterate(serve, snap, p, items))
            except Exception:
                self._failed(flow_key, p, snap, started)
                raise
            result = items
        self._finish(flow_key, has_updates, p, key, result, hit, snap, started)
        if flush_update and has_updates:
            self.flush_update(flow_key)

    async def agen(
        self,
        flow_key: str,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
    ) -> AsyncIterator[Any]:
        """Async twin of :meth:`gen`, for async generator serve ops."""
        serve, has_updates = self._routes(flow_key)
        props = self.check_props(flow_key, props)
        if force_refresh:
            await asyncio.to_thread(self._wait, None)
        started = self._start()
        p, snap, key, hit, result = self._prepare(serve, props, ignore_cache or force_refresh)
        streams = serve is not None and serve.kind in ("gen", "agen")
        if hit:
            for item in result if streams else [result]:
                yield item
        elif serve is not None:
            assert snap is not None
            items: list[Any] = []
            try:
                async for item in serving.awithin(
                    self._run(flow_key, started), serving.aiterate(serve, snap, p, items)
                ):
                    yield item
            except Exception:
                self._failed(flow_key, p, snap, started)
                raise
            result = items if streams else items[0]
        else:
            yield None
        self._finish(flow_key, has_updates, p, key, result, hit, snap, started)
        if flush_update and has_updates:
            await asyncio.to_thread(self.flush_update, flow_key)

    # -- state ------------------------------------------------------------

    def read_state(self, key: str, default_value: Any = None) -> Any:
        """The latest committed value of one state key (a private copy)."""
        snap = self.app.snapshot(self.component, self._id)
        if self.component.whole_state:
            # Loaded afresh: the snapshot's values are shared with serve ops.
            layout = self.app.layout(self.component)
            return layout.update_state(snap.raw_items, self.app.decoder(self.component.name, self._id), self._id).get(
                key, default_value
            )
        raw = snap.raw(key)
        return default_value if raw is None else self.app.decoder(self.component.name, self._id)(raw, key)

    def write_state(self, state_update: dict[str, Any], latest: bool = False) -> None:
        """Set state keys directly, outside any flow, in one atomic commit.
        An update batch running at the same time is re-run on top of it."""
        del latest  # always applied to the latest version
        if not isinstance(state_update, dict):
            raise TypeError(f"write_state expects a dict of state keys, got {type(state_update).__name__}")
        app = self.app
        layout = app.layout(self.component)
        encode = app.encoder(self.component, self._id)
        for _ in range(5):
            snap = app.snapshot(self.component, self._id)
            state = layout.update_state(snap.raw_items, app.decoder(self.component.name, self._id), self._id)
            for k, v in state_update.items():
                if not isinstance(k, str):
                    raise TypeError(f"state keys must be strings, got {k!r}")
                dict.__setitem__(state, k, v)
            changes = layout.encode(state, state_update, encode)
            try:
                version = app.store.commit(self.component.name, self._id, changes, expected_version=snap.version)
            except VersionConflictError:
                continue
            if changes:
                app.install(self.component, layout.advance(snap, version, changes, ()))
            app.notify_committed()
            return
        raise TidalError(f"write_state on {self!r} kept conflicting with concurrent updates")

    def get_version(self) -> int:
        """The version of the latest committed state (1 after init_state)."""
        version = self.app.store.get_version(self.component.name, self._id)
        if version is None:
            raise TidalError(f"{self!r} no longer exists in the store")
        return version

    # -- updates ----------------------------------------------------------

    def _wait(self, flow_key: str | None, timeout: float | None = None) -> int:
        """Wait until every op queued so far (of ``flow_key``) is done;
        returns the id of the last op waited for."""

        store = self.app.store
        name = self.component.name
        upto = store.last_op_id(name, self._id, flow=flow_key)
        deadline = None if timeout is None else time.monotonic() + timeout
        # Local commits wake us at once; commits by other processes are seen
        # by polling, quickly at first and backing off to FLUSH_POLL_SECONDS.
        pause = 0.001
        while store.pending(name, self._id, flow=flow_key, upto=upto):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"updates of {self!r} still pending after {timeout}s")
            self.app.hurry()
            self.app.wait_committed(pause)
            pause = min(pause * 2, FLUSH_POLL_SECONDS)
        self.app.wait_settled(name, self._id, deadline)
        return upto

    def _apply_here(self) -> None:
        """Run the ops queued so far for this instance in the calling thread,
        batch by batch (a batch may be another instance's of the component),
        until none of them is left that no one else holds."""
        store, name = self.app.store, self.component.name
        upto = store.last_op_id(name, self._id)
        executor = Executor(self.app, threads=1, components=[name])
        executor.drain(until=lambda: not store.pending(name, self._id, upto=upto))

    def flush_update(self, flow_key: str | None = None, timeout: float | None = None) -> None:
        """Wait until the update ops queued so far (of ``flow_key``, or of
        every flow) are applied. Raises :class:`UpdateFailedError`, with each
        traceback, if any of them failed since the last flush."""
        if flow_key is not None and flow_key not in self.component.update_routes:
            self._routes(flow_key)  # unknown flow -> UnknownFlowError
            return
        self.app.dispatch_changes()
        if self.disable_update_task:
            # As in Motion, the caller applies what is queued; ops that a
            # worker holds the lease on are waited for below.
            self._apply_here()
        elif not self.app.executor_running:
            if self.update_task_type == "process":
                self.app.start_process_worker()
            else:
                self.app.executor  # noqa: B018 - someone has to run them
        started = time.monotonic()
        upto = self._wait(flow_key, timeout)
        if self.update_task_type == "process" and self.app.runs_log_enabled:
            # The child logs the runs of what it applied: have them written too.
            left = 10.0 if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            if not self.app.start_process_worker().runs_written(left):
                log.debug("%r: the update process did not confirm its runs log within %.1f s", self, left)
        failures = [
            f
            for f in self.app.store.failures(
                self.component.name, self._id, flow=flow_key, after=self._reported_upto, upto=upto
            )
            if f.op_id not in self._reported_ops
        ]
        if flow_key is None:
            self._reported_upto = max(self._reported_upto, upto)
            self._reported_ops = {i for i in self._reported_ops if i > self._reported_upto}
        else:
            # Not a watermark: failures of other flows before these stay unreported.
            self._reported_ops.update(f.op_id for f in failures)
        if failures:
            raise UpdateFailedError(failures)

    # -- lifecycle --------------------------------------------------------

    def close(self, wait_for_logging_threads: bool = False) -> None:
        """Close this handle (flushing first if ``flush_on_exit``). The state
        and any queued updates stay in the store."""
        del wait_for_logging_threads
        if self._closed:
            return
        try:
            if self.flush_on_exit and self.component.update_routes and not self.disable_update_task:
                self.flush_update()
        finally:
            self._closed = True

    shutdown = close

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
