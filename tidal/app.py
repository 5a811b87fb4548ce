"""App: one store, one secret key, the components that run on them, and the
process-wide snapshots and cache that their instances share."""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import config, constants
from .codec import Codec
from .core.component import CacheMode, Component
from .core.layout import KeyLayout, Layout, WholeLayout
from .core.state import Snapshot
from .data import RelationsAPI
from .engine.cache import LocalCache
from .exceptions import StoreError
from .stores import Store, from_url

if TYPE_CHECKING:
    from .engine.dispatch import Dispatcher, Scheduler
    from .engine.executor import Executor
    from .engine.process import ProcessWorker
    from .engine.runlog import RunLog
    from .relations import Database
    from .relations.builtin import Feedback

_apps: weakref.WeakSet[App] = weakref.WeakSet()


class App(RelationsAPI):
    """A Tidal application.

    ``store`` is a URL (``sqlite:///path``, ``memory://``) or a Store; by
    default a SQLite file named after the app in ``TIDAL_HOME`` (``./.tidal``).
    ``db`` is where relations live (a SQLAlchemy URL, e.g.
    ``postgresql://…``); by default the store's SQLite file (an in-memory
    SQLite database for ``memory://``). No server is needed::

        app = tidal.App("shop")
        Prefs = app.component("Prefs")
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
        self.components: dict[str, Component] = {}
        self.cache = LocalCache(self.settings.local_cache_entries)
        self._snapshots: dict[tuple[str, str], Snapshot] = {}
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
        self._closed = False
        _apps.add(self)

    # -- components -------------------------------------------------------

    def component(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        cache_ttl: float = constants.DEFAULT_CACHE_TTL,
        *,
        cache_mode: CacheMode = "version",
    ) -> Component:
        """Define a component that runs in this app."""
        return Component(name, params, cache_ttl, cache_mode=cache_mode, app=self)

    def register(self, component: Component) -> None:
        """Make ``component``'s update ops runnable by this app's workers. A
        component defined again under the same name replaces the old one."""
        self.components[component.name] = component
        self._layouts.pop(component.name, None)
        if self._db is not None:
            for trigger in component.triggers:
                self._db.watch(trigger.relation, component.name, trigger.flow)
        if self._executor is not None:
            self.start_helpers()

    def ensure_instance(self, component: Component, instance: str, params: dict[str, Any] | None = None) -> bool:
        """Create the instance with ``init_state(**params)`` unless it exists;
        True if this call created it."""
        if self.store.get_version(component.name, instance) is not None:
            return False
        state = component.make_init_state(params or {})
        values = self.layout(component).encode_initial(state, self.encoder(component, instance))
        created, _ = self.store.create_instance(component.name, instance, values)
        return created

    # -- relations --------------------------------------------------------

    @property
    def db(self) -> Database:
        """Where this app's relations live (opened on first use)."""
        if self._db is None:
            with self._helpers_lock:
                if self._db is None:
                    from .relations import Database
                    from .stores.sqlite import SQLiteStore

                    url = self._db_url
                    if url is None:
                        url = f"sqlite:///{self.store.path}" if isinstance(self.store, SQLiteStore) else "sqlite://"
                    database = Database(url)
                    database.on_change.append(self._on_relation_change)
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
                    from .engine.runlog import RunLog

                    self._runlog = RunLog(self, retention=self._runs_retention)
        return self._runlog

    def feedback(
        self,
        run_id: str,
        score: float | None = None,
        label: str | None = None,
        comment: str | None = None,
    ) -> Feedback:
        """Store feedback on a run (``instance.last_run_id``) in the
        ``feedback`` relation, where it can trigger updates::

            @Ranker.update(on=tidal.Feedback, instance=lambda f: f.instance)
            def learn(state, props): ...
        """
        from .exceptions import RecordNotFoundError
        from .relations.builtin import Feedback, Run

        if self._runlog is not None:
            self._runlog.flush()
        run = self.get(Run, run_id)
        if run is None:
            raise RecordNotFoundError(f"no run {run_id!r} in the runs log of app {self.name!r}")
        stored: Feedback = self.insert(
            Feedback(
                run_id=run_id,
                component=run.component,
                instance=run.instance,
                flow=run.flow,
                score=score,
                label=label,
                comment=comment,
            )
        )
        return stored

    def freshness(self, components: list[str] | None = None, window: timedelta = timedelta(minutes=5)) -> list[Any]:
        """How far behind each component's updates are: queue depth, the
        oldest pending op's wait, failures, and enqueue-to-commit lag
        (p50 / p99) of update runs in the last ``window``. See
        :class:`tidal.freshness.Freshness`."""
        from .engine.freshness import freshness

        return freshness(self, components, window)

    def sql(self, query: str, params: Any = None, *, write: bool = False) -> Any:
        """Run SQL with bound parameters only (``:name`` placeholders, values
        in ``params``) over the app's relations, ``runs`` and ``feedback``
        included; returns rows (``.df()``, ``.arrow()`` on request).
        Read-only unless ``write=True``."""
        if self._runlog is not None and self._runlog.pending:
            self._runlog.flush()
        return super().sql(query, params, write=write)

    def _relations_written(self, cls: type) -> None:
        # Records with triggers need someone to dispatch them: start this
        # process's background work if nothing runs it yet.
        if (
            self._executor is None
            and self._process_worker is None
            and any(t.relation is cls for c in self.components.values() for t in c.triggers)
        ):
            self.executor  # noqa: B018

    def _on_relation_change(self) -> None:
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
        from .engine.dispatch import Dispatcher

        dispatcher = self._dispatcher or Dispatcher(self)
        total = 0
        while moved := dispatcher.run_once():
            total += moved
        return total

    def start_helpers(self) -> None:
        """Start the dispatcher of relation triggers and the scheduler, if
        this app's components need them (called where update ops run)."""
        from .engine.dispatch import Dispatcher, Scheduler

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

    def layout(self, component: Component) -> Layout:
        """How ``component``'s state is laid out in the store."""
        layout = self._layouts.get(component.name)
        if layout is None:
            layout = (
                WholeLayout(component._save_state_fn, component._load_state_fn)
                if component.whole_state
                else KeyLayout()
            )
            self._layouts[component.name] = layout
        return layout

    # -- serialisation ----------------------------------------------------

    def encoder(self, component: Component, instance: str) -> Any:
        """A function that serialises a state value, naming it in errors."""
        dumps = self.codec.dumps
        prefix = f"state key of {component.name}/{instance}"

        def encode(value: Any, key: str) -> bytes:
            return dumps(value, what=(prefix, key))

        return encode

    def decode(self, raw: bytes, key: str) -> Any:
        """Deserialise one stored state value."""
        return self.codec.loads(raw, what=("state key", key))

    # -- snapshots --------------------------------------------------------

    def snapshot(self, component: Component, instance: str, version: int | None = None) -> Snapshot:
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

    def _refresh(self, component: Component, instance: str) -> Snapshot:
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
                snap = layout.snapshot(read.version, read.changed, self.decode, instance)
            else:
                snap = layout.advance(current, read.version, read.changed, read.deleted)
            self._snapshots[key] = snap
            return snap

    def install(self, component: Component, snapshot: Snapshot) -> None:
        """Publish a snapshot this process committed, unless a newer one is known."""
        key = (component.name, snapshot.instance_id)
        with self._snap_lock:
            current = self._snapshots.get(key)
            if current is None or current.version < snapshot.version:
                self._snapshots[key] = snapshot

    def forget(self, component: Component, instance: str) -> None:
        """Drop the process's snapshot and cached results of an instance."""
        with self._snap_lock:
            self._snapshots.pop((component.name, instance), None)
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
                    from .engine.executor import Executor

                    executor = Executor(self)
                    executor.start()
                    self._executor = executor
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
                    from .engine.process import ProcessWorker

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

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<App {self.name!r} store={self.store.url}>"


_default: App | None = None
_default_lock = threading.Lock()


def default_app() -> App:
    """The app used by components not bound to one, configured from the
    environment (``TIDAL_STORE``, ``TIDAL_HOME``, ``TIDAL_SECRET_KEY``)."""
    global _default
    if _default is None or _default._closed:
        with _default_lock:
            if _default is None or _default._closed:
                _default = App()
    return _default


def set_default_app(app: App | None) -> None:
    """Replace the default app (tests, or code that configures one up front)."""
    global _default
    _default = app


@atexit.register
def _close_all() -> None:
    for app in list(_apps):
        app.close()
