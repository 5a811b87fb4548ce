"""Runtime: what the engine runs on (store, codec, components, snapshots,
caches and background helpers), kept apart from the user's :class:`tidal.App`
so that nothing in the engine depends on the API above it."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from .. import config, constants, relations
from ..codec import Codec, key_context, state_context
from ..context import CurrentRun
from ..core.component import ComponentSpec
from ..core.layout import KeyLayout, Layout, WholeLayout, unstorable
from ..core.state import Decode, Snapshot
from ..core.variants import Variants
from ..exceptions import ConfigError, StoreError
from ..lru import LRU
from ..stores import Store, from_url
from .cache import LocalCache
from .dispatch import Dispatcher
from .executor import Executor
from .process import ProcessWorker
from .runlog import RunLog
from .schedule import Scheduler
from .traces import MISSING_EXTRA, TraceExporter
from .variants import VariantResolver

if TYPE_CHECKING:
    from ..relations.database import Database

log = logging.getLogger("tidal")

C = TypeVar("C", bound=ComponentSpec, default=Any)
"""The component type a runtime holds (:class:`tidal.Component` in an App);
the engine, which needs only the definitions, leaves it open."""


class Runtime(Generic[C]):
    """What the engine runs on: one store, one secret key, the components
    registered to run, and the process-wide snapshots, cache and background
    helpers (executor, dispatcher, scheduler, runs log) they share.

    :class:`tidal.App` is a Runtime with the user's verbs on top; the engine
    only ever sees this class. ``store`` is a URL (``sqlite:///path``, ``memory://``) or a Store; by
    default a SQLite file named after the app in ``TIDAL_HOME`` (``./.tidal``).
    ``db`` is where relations live (a SQLAlchemy URL, e.g.
    ``postgresql://…``); by default the store's SQLite file (an in-memory
    SQLite database for ``memory://``).
    """

    def __init__(
        self,
        name: str = constants.DEFAULT_APP_NAME,
        store: str | Store | None = None,
        *,
        home: str | Path | None = None,
        secret_key: str | bytes | None = None,
        settings: config.Settings | None = None,
        shared_cache: bool = False,
        db: str | None = None,
        runs_log: bool = True,
        runs_retention: timedelta | None = timedelta(days=30),
    ) -> None:
        self.name = name
        self.home = config.home_dir(home)
        self.settings = settings or config.Settings()
        if isinstance(store, Store):
            self.store = store
        else:
            self.store = from_url(store or config.default_store_url(name, self.home))
        self.store.history_versions = self.settings.history_versions
        self.codec = Codec(config.secret_key(self.home, secret_key))
        self.shared_cache = shared_cache and self.store.shared
        self.components: dict[str, C] = {}
        self._definitions: weakref.WeakValueDictionary[str, C] = weakref.WeakValueDictionary()
        self.cache = LocalCache(self.settings.local_cache_entries)
        # The snapshots of the instances served lately (least recently used
        # dropped: a dropped one costs a full read of its state when served
        # again). Serves read without the lock; writers hold it.
        self._snapshots: LRU[tuple[str, str], Snapshot] = LRU(self.settings.snapshot_instances)
        self._layouts: dict[str, Layout] = {}
        self._snap_lock = threading.Lock()
        self._committed = threading.Condition()
        self._settling: dict[tuple[str, str], int] = {}
        """(component, instance) -> batches of this process's executor between
        their commit and the end of its local effects (cache, runs log)."""
        self._executor: Executor | None = None
        self._executor_lock = threading.Lock()
        self._process_worker: ProcessWorker | None = None
        self._db_url = db or os.environ.get("TIDAL_DB")
        self._db: Database | None = None
        self._dispatcher: Dispatcher | None = None
        self._scheduler: Scheduler | None = None
        self._helpers_lock = threading.RLock()
        self.dispatch_lock = threading.Lock()
        self._runs_enabled = runs_log
        self._runs_retention = runs_retention
        self._runlog: RunLog | None = None
        self._traces: dict[str, Any] | None = None
        """How this app exports traces (``export_traces``' arguments), for a
        forked update process to do the same."""
        self._variants: VariantResolver | None = None
        self._closed = False
        _open.add(self)
        self._traces_from_env()

    def reopened(self) -> Runtime[C]:
        """A new Runtime on the same store, home, key and settings with the
        same components, opening its own connections: what a forked update
        process runs on (no connection may cross a fork)."""
        runtime: Runtime[C] = Runtime(
            self.name,
            store=self.store.url,
            home=self.home,
            secret_key=self.codec.key,
            settings=self.settings,
            runs_log=self.runs_log_enabled,
        )
        if self._traces is not None and runtime._traces is None:
            runtime.export_traces(**self._traces)
        # Every definition alive here, so that ops queued through an earlier
        # one of a shared name run its code there too; then the ones the
        # names stand for, as here.
        for component in [*self._definitions.values(), *self.components.values()]:
            runtime.register(component)
        return runtime

    # -- components -------------------------------------------------------

    def register(self, component: C) -> None:
        """Make ``component``'s update ops runnable by this app's workers. A
        component defined again under the same name becomes the one the name
        stands for (for the HTTP API, the CLI, triggers and schedules); the
        earlier definition still runs the ops its own instances queue, as
        long as it is alive (see :meth:`definition`)."""
        new = component.definition_id not in self._definitions
        self.components[component.name] = component
        self._definitions[component.definition_id] = component
        if new and self._process_worker is not None:
            # The update process is a fork of this one and knows only what was
            # defined before it started: let the next instance that needs it
            # start a new one.
            with self._executor_lock:
                worker, self._process_worker = self._process_worker, None
            if worker is not None:
                worker.stop()
        self._layouts.pop(component.name, None)
        if self._db is not None:
            for trigger in component.triggers:
                self._db.watch(trigger.relation, component.name, trigger.flow)
        if self._executor is not None:
            self.start_helpers()

    def definition(self, definition_id: str) -> C | None:
        """The registered component with this ``definition_id``, if it is
        still alive in this process."""
        return self._definitions.get(definition_id)

    def ensure_instance(self, component: ComponentSpec, instance: str, params: dict[str, Any] | None = None) -> bool:
        """Create the instance with ``init_state(**params)`` unless it exists;
        True if this call created it."""
        if self.store.get_version(component.name, instance) is not None:
            return False
        state = component.make_init_state(params or {})
        layout = self.layout(component)
        values = layout.encode_initial(state, self.encoder(component, instance))
        created, version = self.store.create_instance(component.name, instance, values)
        if created and isinstance(layout, WholeLayout):
            live = unstorable(state)
            if live:  # this process keeps the objects init_state made that cannot be stored
                decode = self.decoder(component.name, instance)
                self.install(component, layout.live_snapshot(version, dict(values), decode, instance, live))
        return created

    # -- relations --------------------------------------------------------

    @property
    def db(self) -> Database:
        """Where this app's relations live (opened on first use)."""
        if self._db is None:
            with self._helpers_lock:
                if self._db is None:
                    # By default relations share the SQLite store's file; other
                    # stores get an in-memory SQLite database.
                    url = self._db_url
                    if url is None:
                        url = self.store.url if self.store.url.startswith("sqlite:///") else "sqlite://"
                    database = relations.Database(url)  # SQLAlchemy loads here, on first use
                    database.on_change.append(self.on_relation_change)
                    for component in self.components.values():
                        for trigger in component.triggers:
                            database.watch(trigger.relation, component.name, trigger.flow)
                    self._db = database
        return self._db

    # -- runs log and feedback ---------------------------------------------

    @property
    def runs_log_enabled(self) -> bool:
        """Whether this app keeps a runs log (``runs_log=``)."""
        return self._runs_enabled

    @property
    def runlog(self) -> RunLog | None:
        """The runs log (None when the app was made with ``runs_log=False``)."""
        if self._runlog is None and self._runs_enabled and not self._closed:
            with self._helpers_lock:
                if self._runlog is None:
                    self._runlog = RunLog(self, retention=self._runs_retention)
        return self._runlog

    # -- experiments and guardrails ------------------------------------------

    @property
    def variant_resolver(self) -> VariantResolver:
        """Which variant each instance gets, promotions applied."""
        if self._variants is None:
            self._variants = VariantResolver(self)
        return self._variants

    def variants(self, component: ComponentSpec, instance: str) -> dict[str, str]:
        """``instance``'s variant of each Variants param of ``component``
        (what its runs record)."""
        return self.variant_resolver.variants(component, instance)

    def variant_of(self, component: str, param: str, variants: Variants, instance: str) -> str:
        """The variant ``instance`` gets for ``component.param`` (how
        ``C.params[param]`` reads inside an op)."""
        return self.variant_resolver.variant_of(component, param, variants, instance)

    def record_violation(self, run: CurrentRun, guard: str, stage: str, action: str, detail: str) -> None:
        """Log what a guard found in ``run`` (a ``guard_violations`` row,
        written with the runs)."""
        runlog = self.runlog
        if runlog is None:
            return
        runlog.record_row(
            relations.GuardViolation,
            {
                "id": runlog.new_id(),
                "run_id": run.id,
                "component": run.component,
                "instance": run.instance,
                "flow": run.flow,
                "guard": guard,
                "stage": stage,
                "action": action,
                "detail": detail[:10_000],
            },
        )

    def export_traces(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        service_name: str | None = None,
        resource: Mapping[str, str] | None = None,
        timeout: float = constants.OTLP_TIMEOUT_S,
        max_queue: int = constants.OTLP_MAX_QUEUE,
    ) -> TraceExporter:
        """Send every run this process logs, and every model call made in
        them, as OpenTelemetry spans (GenAI semantic conventions) to an
        OTLP/HTTP receiver: Arize Phoenix, Langfuse, Jaeger, a Collector::

            app.export_traces("http://127.0.0.1:6006/v1/traces")   # Phoenix

        ``endpoint`` defaults to ``TIDAL_OTLP_ENDPOINT``, then the standard
        ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``,
        then ``http://localhost:4318/v1/traces``; ``headers`` (an API key)
        default to ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` / ``..._HEADERS``;
        ``service_name`` to ``OTEL_SERVICE_NAME``, then the app's name;
        ``resource`` adds resource attributes (Phoenix files spans under
        ``openinference.project.name``). ``timeout`` bounds one export
        request; past ``max_queue`` unsent runs and calls, new ones are
        dropped (and counted).
        Spans are made and sent off the serve path, by the runs log's writer
        and a thread of the exporter's own; a receiver that is down or slow
        costs dropped spans (``.stats()``), never a slower serve. Calling it
        again for the same endpoint replaces that exporter. Needs
        ``pip install 'tidal[traces]'`` (ConfigError without it)."""
        runlog = self.runlog
        if runlog is None:
            raise ConfigError(
                f"app {self.name!r} keeps no runs log (runs_log=False), so it has no runs to export as traces"
            )
        target = endpoint or config.otlp_endpoint()
        exporter = TraceExporter(
            target,
            headers=headers,
            service_name=service_name or os.environ.get("OTEL_SERVICE_NAME") or self.name,
            resource={"tidal.app": self.name, **(resource or {})},
            timeout=timeout,
            max_queue=max_queue,
        )
        for old in [s for s in runlog.sinks if isinstance(s, TraceExporter) and s.endpoint == target]:
            runlog.sinks.remove(old)
            old.close()
        runlog.sinks.append(exporter)
        self._traces = {
            "endpoint": target,
            "headers": headers,
            "service_name": service_name,
            "resource": resource,
            "timeout": timeout,
            "max_queue": max_queue,
        }
        return exporter

    def _traces_from_env(self) -> None:
        """Export traces when the environment asks for it (``TIDAL_OTLP_ENDPOINT``,
        or OpenTelemetry's ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)."""
        source = config.traces_from_env()
        if source is None or not self._runs_enabled:
            return
        try:
            self.export_traces()
        except ConfigError:
            if source == "tidal":
                raise
            # Set for other instrumentation of this process: not Tidal's to fail on.
            log.warning("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set but %s", MISSING_EXTRA)

    def flush_runs(self, *, always: bool = False) -> None:
        """Write the runs log's buffered runs now (if any are pending, unless
        ``always``), so that a query sees every run recorded so far."""
        runlog = self._runlog
        if runlog is not None and (always or runlog.pending):
            runlog.flush()

    def relations_written(self, cls: type) -> None:
        """Hook for the relation verbs: records of ``cls`` were written."""
        # Records with triggers need someone to dispatch them: start this
        # process's background work if nothing runs it yet.
        if (
            self._executor is None
            and self._process_worker is None
            and any(t.relation is cls for c in self.components.values() for t in c.triggers)
        ):
            self.executor  # noqa: B018

    def on_relation_change(self) -> None:
        """A watched relation changed: wake whoever dispatches its triggers."""
        if self._dispatcher is not None:
            self._dispatcher.notify()
        if self._process_worker is not None:  # its dispatcher runs in the child
            self._process_worker.hurry()

    def dispatch_changes(self) -> int:
        """Queue the ops of every relation change recorded so far (what the
        dispatcher thread does, done now in this thread); returns how many
        changes were handed over. ``flush_update`` calls it so that a flush
        after an insert waits for the insert's triggers too."""
        if self._db is None or not any(c.triggers for c in self.components.values()):
            return 0

        dispatcher = self._dispatcher or Dispatcher(self)
        total = 0
        while moved := dispatcher.run_once():
            total += moved
        return total

    def start_helpers(self) -> None:
        """Start the dispatcher of relation triggers and the scheduler, if
        this app's components need them (called where update ops run)."""

        with self._helpers_lock:
            if self._closed:
                return
            if self._dispatcher is None and any(c.triggers for c in self.components.values()):
                self.db  # noqa: B018 - opens the database and watches the relations
                self._dispatcher = Dispatcher(self)
                self._dispatcher.start()
            if self._scheduler is None and any(c.schedules for c in self.components.values()):
                self._scheduler = Scheduler(self)
                self._scheduler.start()

    def layout(self, component: ComponentSpec) -> Layout:
        """How ``component``'s state is laid out in the store."""
        layout = self._layouts.get(component.name)
        if layout is None:
            layout = (
                WholeLayout(component.save_state_fn, component.load_state_fn) if component.whole_state else KeyLayout()
            )
            self._layouts[component.name] = layout
        return layout

    # -- serialisation ----------------------------------------------------

    def encoder(self, component: ComponentSpec, instance: str) -> Callable[[Any, str], bytes]:
        """A function that serialises a state value of ``instance``, signed
        for its component, instance and key (so it checks out nowhere else)
        and naming it in errors."""
        dumps = self.codec.dumps
        label = f"state key of {component.name}/{instance}"
        place = state_context(component.name, instance)

        def encode(value: Any, key: str) -> bytes:
            return dumps(value, what=(label, key), context=key_context(place, key))

        return encode

    def decoder(self, component: str, instance: str) -> Decode:
        """A function that checks and deserialises a stored state value of
        ``instance`` of the component named ``component`` (see :meth:`encoder`)."""
        loads = self.codec.loads
        place = state_context(component, instance)

        def decode(raw: bytes, key: str) -> Any:
            return loads(raw, what=("state key", key), context=key_context(place, key))

        return decode

    def verify_state(self, component: str, instance: str, key: str, raw: bytes) -> None:
        """Raise StateIntegrityError unless ``raw`` is a value signed for this
        key of this instance (nothing is unpickled)."""
        context = key_context(state_context(component, instance), key)
        self.codec.verify(raw, what=(f"{component}/{instance} state key", key), context=context)

    # -- snapshots --------------------------------------------------------

    def snapshot(self, component: ComponentSpec, instance: str, version: int | None = None) -> Snapshot:
        """The current committed state of an instance, shared read-only;
        ``version``: its version as the caller has just read it from the
        store (saves reading it again)."""
        name = component.name
        if version is None:
            version = self.store.get_version(name, instance)
        snap = self._snapshots.get((name, instance))
        if snap is not None and snap.version == version:
            return snap
        if version is None:
            raise StoreError(f"instance {name}/{instance} does not exist in {self.store.url}")
        return self._refresh(component, instance)

    def _refresh(self, component: ComponentSpec, instance: str) -> Snapshot:
        key = (component.name, instance)
        layout = self.layout(component)
        with self._snap_lock:
            current = self._snapshots.get(key)
            read = self.store.read_state(component.name, instance, since=current.version if current else 0)
            if read is None:
                raise StoreError(f"instance {component.name}/{instance} does not exist in {self.store.url}")
            if current is not None and read.version <= current.version:
                return current
            if current is None:
                snap = layout.snapshot(read.version, read.changed, self.decoder(component.name, instance), instance)
            else:
                snap = layout.advance(current, read.version, read.changed, read.deleted)
            self._snapshots.put(key, snap)
            return snap

    @property
    def snapshots_held(self) -> int:
        """How many instances' snapshots this process holds (at most
        ``Settings.snapshot_instances``)."""
        return len(self._snapshots)

    def install(self, component: ComponentSpec, snapshot: Snapshot) -> None:
        """Publish a snapshot this process committed, unless a newer one is known."""
        key = (component.name, snapshot.instance_id)
        with self._snap_lock:
            current = self._snapshots.get(key)
            if current is None or current.version < snapshot.version:
                self._snapshots.put(key, snapshot)

    def forget(self, component: ComponentSpec, instance: str) -> None:
        """Drop the process's snapshot and cached results of an instance."""
        with self._snap_lock:
            self._snapshots.pop((component.name, instance))
        self.cache.drop_instance(component.name, instance)

    # -- executor ---------------------------------------------------------

    @property
    def executor(self) -> Executor:
        """This process's update executor (started on first use)."""
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    if self._closed:
                        raise StoreError(f"app {self.name!r} is closed")

                    executor = Executor(self)
                    executor.start()
                    self._executor = executor
                    _stop_at_exit()
        return self._executor

    @property
    def executor_running(self) -> bool:
        return self._executor is not None or self._process_worker is not None

    def start_process_worker(self) -> ProcessWorker:
        """Run update ops in a forked child process instead of threads here
        (``update_task_type="process"``)."""
        if self._process_worker is None:
            with self._executor_lock:
                if self._process_worker is None:
                    if self._closed:
                        raise StoreError(f"app {self.name!r} is closed")

                    self._process_worker = ProcessWorker(self)
        return self._process_worker

    def notify_enqueued(self, component: str | None = None, instance: str | None = None) -> None:
        """Ops were queued (for ``instance`` of ``component``, if given)."""
        if self._executor is not None:
            self._executor.notify(component, instance)
        if self._process_worker is not None:
            self._process_worker.notify()

    def hurry(self) -> None:
        """Ask the executor to claim now (someone waits for updates)."""
        if self._executor is not None:
            self._executor.hurry()
        if self._process_worker is not None:
            self._process_worker.hurry()

    def notify_committed(self) -> None:
        with self._committed:
            self._committed.notify_all()

    def wait_committed(self, timeout: float) -> None:
        """Sleep until this process commits something, at most ``timeout``."""
        with self._committed:
            self._committed.wait(timeout)

    @contextmanager
    def settling(self, component: str, instance: str) -> Iterator[None]:
        """Held by the executor around a batch's commit and what follows it
        here (installing the new state, recording its runs): a commit is
        visible in the store before those are done, and a ``flush_update``
        that returned in between would let its caller miss the runs."""
        key = (component, instance)
        with self._committed:
            self._settling[key] = self._settling.get(key, 0) + 1
        try:
            yield
        finally:
            with self._committed:
                if self._settling[key] == 1:
                    del self._settling[key]
                else:
                    self._settling[key] -= 1
                self._committed.notify_all()

    def wait_settled(self, component: str | None, instance: str | None, deadline: float | None) -> None:
        """Wait until no batch of the instance (of any, for None) is between
        its commit and the end of its local effects in this process (see
        :meth:`settling`)."""

        key = (component, instance)

        def busy() -> bool:
            return bool(self._settling) if component is None or instance is None else key in self._settling

        with self._committed:
            while busy():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"updates of {component}/{instance} still settling")
                self._committed.wait(left)

    # -- lifecycle --------------------------------------------------------

    def close(self) -> None:
        """Stop the executor (after its batch in hand) and close the store.
        Queued ops stay in a persistent store for the next run."""
        if self._closed:
            return
        self._closed = True
        with self._helpers_lock:
            for helper in (self._scheduler, self._dispatcher):
                if helper is not None:
                    helper.stop()
        if self._executor is not None:
            self._executor.stop()
        if self._process_worker is not None:
            self._process_worker.stop()
        if self._runlog is not None:
            self._runlog.close()
        self.store.close()
        if self._db is not None:
            self._db.close()

    def _after_fork_in_child(self) -> None:
        """In a forked child (a gunicorn worker, a multiprocessing child):
        drop the parent's background helpers, whose threads do not exist
        here (the executor starts afresh on first need, as in a new
        process), and the update process, which is the parent's child; new
        locks, since a parent's thread may have held one at the fork; and
        the store's connections, which belong to the parent."""
        self._executor = None
        self._dispatcher = None
        self._scheduler = None
        worker, self._process_worker = self._process_worker, None
        if worker is not None:
            worker.forsake()
        self._executor_lock = threading.Lock()
        self._helpers_lock = threading.RLock()
        self.dispatch_lock = threading.Lock()
        self._committed = threading.Condition()
        self._settling = {}
        self._snap_lock = threading.Lock()
        self.cache.after_fork_in_child()
        self.store.after_fork_in_child()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} store={self.store.url}>"


_open: weakref.WeakSet[Runtime] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # A clean exit stops the executors after their batch in hand and writes
    # the buffered runs.
    for runtime in list(_open):
        runtime.close()


def _after_fork_in_child() -> None:
    for runtime in list(_open):
        runtime._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)

_exit_hooked_pid: int | None = None


def _stop_at_exit() -> None:
    """Once per process, when its first executor starts: close the runtimes
    at multiprocessing's exit too. Its children end with ``os._exit``, past
    atexit, and an executor left running there would take its batch in hand
    down with it, leaving the batch's lease for the other processes to wait
    out. A child's registry starts empty, so this is done in the child; the
    priority is above the runs log's (which writes what the close records)."""
    global _exit_hooked_pid
    if _exit_hooked_pid == os.getpid():
        return
    _exit_hooked_pid = os.getpid()
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _close_all, exitpriority=20)
