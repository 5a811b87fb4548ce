"""The runs log: the batched writer of the built-in ``runs`` relation.

Every serve and update run is recorded as a row of ``runs``. Recording costs
the caller only an id and an append to a buffer; a writer thread turns the
buffer into rows (JSON-encoding props and results there, off the hot path)
and inserts them in batches. ``flush()`` (called by ``feedback``, ``sql``
and a clean shutdown) writes what is buffered, so nothing is lost on a clean
exit. ``feedback`` on a run is a relation too, so it can trigger updates.

The log never wedges on a run it cannot store: a batch the database refuses
is written again with its text made storable (lone surrogates escaped, long
text cut to ``MAX_TEXT_CHARS`` with a marker), then row by row; a row that
still fails is stored without its props and result, saying why, or, failing
that, counted in ``failed`` and dropped. Only errors of the database itself
(locked, unreachable, full) keep a batch buffered for the next try.
``stats()`` tells how the writer is doing (``/readyz`` shows it).

What is written can be passed on: each of ``sinks`` (a :class:`RunSink`) is
told of every batch after it is stored, in the writer thread (the trace
exporter, :mod:`tidal.engine.traces`, is one). The serve path never sees them.

Processes: a forked child starts a log of its own (new id prefix, locks and
writer thread; the parent's buffered runs stay the parent's), and what is
buffered is written at exit (atexit, multiprocessing's exit finalizers, and
SIGTERM when no one else handles it).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from .. import relations
from ..types import RecordClass

if TYPE_CHECKING:
    from .runtime import Runtime

# SQLAlchemy, pydantic and the relations are imported where they are used:
# this module is imported with tidal itself (``Entry``), they are not.

log = logging.getLogger("tidal.runs")

MAX_TEXT_CHARS = 1_000_000
"""The most characters of props, result (as JSON) or error text a run row
keeps; longer text is cut, with a marker saying how long it was. The runs
log is for looking at runs: a megabyte is far more than a dashboard or a SQL
query wants, and without a bound one huge result (SQLite refuses text over
1e9 bytes, PostgreSQL over 1 GB) could not be stored at all."""

STUCK_AFTER_S = 60.0
"""``stats().healthy`` is false once the oldest unwritten run is this old:
the writer normally writes within a fraction of a second."""

EXIT_FLUSH_S = 10.0
"""How long writing buffered runs may delay the exit of a process stopped by
SIGTERM (Kubernetes waits 30 s before it kills)."""


def jsonable(value: Any) -> Any:
    """``value`` as JSON data where possible, else its repr."""
    try:
        return orjson.loads(orjson.dumps(value, default=_default, option=_OPTIONS))
    except TypeError:
        return repr(value)


_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_text(value: Any) -> str | None:
    """``value`` as JSON text (its repr as a JSON string when it has no JSON
    form); None stays SQL NULL."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS).decode()
    except TypeError:
        return orjson.dumps(repr(value)).decode()


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _sqlite_time(epoch: float) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC; the seconds part is formatted
    once per second, since runs come in bursts."""
    whole = int(epoch)
    if _second[0] != whole:
        _second[1] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%d %H:%M:%S")
        _second[0] = whole
    return f"{_second[1]}.{int((epoch - whole) * 1_000_000):06d}"


def _run_columns() -> list[str]:
    return [*relations.Run.model_fields]


def _default(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError


class Entry(NamedTuple):
    """One run as recorded (a row of ``runs`` once written)."""

    id: str
    component: str
    instance: str
    flow: str
    kind: str
    """``serve`` or ``update``."""
    status: str
    """``ok``, ``error`` or ``discarded``."""
    props: Any
    result: Any
    cached: bool
    version_read: int | None
    version_written: int | None
    op_id: int | None
    started: float
    """Epoch seconds."""
    latency: float
    """Seconds."""
    error: str | None
    waited: float | None
    """Seconds the update op waited in the queue; None for serve runs."""
    variants: dict[str, str] | None = None
    """The instance's variant of each Variants param (None without any)."""


class RunSink:
    """What the runs log tells of what it wrote: a hook whose methods do
    nothing by default. They are called in the writer thread after each
    batch is stored (runs the database refused included), so they must
    return at once, handing any real work to a thread of their own: the
    next batch waits for them. What they raise is logged and ignored."""

    def runs_written(self, entries: Sequence[Entry]) -> None:
        """A batch of runs was written."""

    def rows_written(self, rows: Sequence[tuple[RecordClass, dict[str, Any]]]) -> None:
        """A batch of other relations' rows (``model_calls``) was written."""

    def close(self) -> None:
        """The runs log closed after writing what it had: finish up."""


_TEXT_FIELDS = ("id", "component", "instance", "flow", "kind", "status", "error")


@dataclass(frozen=True)
class RunLogStats:
    """How a process's runs log is doing (``RunLog.stats()``)."""

    written: int
    """Rows stored, in full or not."""
    truncated: int
    """Of those, rows whose props, result or error text was cut to
    ``MAX_TEXT_CHARS`` (the stored text says so)."""
    escaped: int
    """Of those, rows with text that is not valid Unicode (lone surrogates),
    stored escaped after the database refused it."""
    reduced: int
    """Of those, rows stored without props and result after the full row was
    refused (their ``error`` says why)."""
    failed: int
    """Runs that could not be stored at all: logged, counted and dropped."""
    dropped: int
    """Runs never buffered because the buffer was full (the database far
    behind or down)."""
    lost: int
    """Runs still buffered when the log was closed or the process exited
    and that could not be written then."""
    pending: int
    """Runs recorded and not yet stored."""
    behind_s: float
    """Age of the oldest pending run (0 when none)."""
    alive: bool
    """Whether the writer thread runs (or has not been needed yet)."""
    retrying: bool
    """Whether the last write failed on an error of the database itself
    (locked, unreachable, full) and waits to be tried again."""
    last_error: str | None
    """The latest write error, as ``Type: message``."""
    last_error_at: float | None
    """When it happened (epoch seconds)."""
    pid: int
    """The process this log writes for."""

    @property
    def healthy(self) -> bool:
        """The writer runs and keeps up: nothing pending for long."""
        return self.alive and self.behind_s < STUCK_AFTER_S

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, ``healthy`` included."""
        return {**asdict(self), "healthy": self.healthy}


class _Unavailable(Exception):
    """The database itself failed (not a row of the batch): ``done`` rows
    of the batch were handled; the rest go back to the buffer."""

    def __init__(self, done: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.done = done
        self.cause = cause


_logs: weakref.WeakSet[RunLog] = weakref.WeakSet()
"""Every open runs log of this process: for the fork and exit hooks."""


class RunLog:
    """Buffers runs and writes them to the ``runs`` relation in batches."""

    max_text = MAX_TEXT_CHARS

    def __init__(
        self,
        app: Runtime,
        *,
        flush_seconds: float = 0.2,
        batch: int = 2000,
        retention: timedelta | None = timedelta(days=30),
        max_buffer: int = 1_000_000,
    ) -> None:
        self.app = app
        self._buffer: deque[Entry] = deque()
        self._rows: deque[tuple[RecordClass, dict[str, Any]]] = deque()
        """Rows of other relations that belong with the runs (``model_calls``)."""
        self._flush_seconds = flush_seconds
        self._batch = batch
        self._max_buffer = max_buffer
        self._retention = retention
        self.sinks: list[RunSink] = []
        """Told of each batch once written (see :class:`RunSink`)."""
        self._stop = threading.Event()
        self._fresh_process()
        _logs.add(self)

    def _fresh_process(self) -> None:
        """The state that belongs to one process: set up at start and again
        in a forked child, where the parent's locks may be held by threads
        that do not exist, the writer thread is gone, and the id prefix and
        buffered runs are the parent's."""
        self._pid = os.getpid()
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count(1)
        self._buffer.clear()
        self._rows.clear()
        self._wake = threading.Event()
        closed = self._stop.is_set()
        self._stop = threading.Event()
        if closed:
            self._stop.set()
        self._write_lock = threading.Lock()
        self._held_for_fork = False
        self._thread: threading.Thread | None = None
        self._started = threading.Lock()
        self._writes = 0
        self._writing = False
        """Whether a flush is writing a batch it took from the buffer."""
        self._owner: int | None = None
        """The thread that holds the write lock in a flush."""
        self.written = 0
        self.dropped = 0
        self.truncated = 0
        self.escaped = 0
        self.reduced = 0
        self.failed = 0
        self.lost = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._retrying = False

    def new_id(self) -> str:
        """A run id unique across processes (random per-process prefix + counter)."""
        return f"{self._prefix}{next(self._counter):08x}"

    def record(self, entry: Entry) -> None:
        """Buffer one run (the hot path: an append and, rarely, a wake-up).
        Past ``max_buffer`` unwritten runs (the database is down or far
        slower than the app) new runs are counted in ``dropped`` and logged
        instead of growing memory without bound."""
        if len(self._buffer) >= self._max_buffer:
            self.dropped += 1
            if self.dropped % 10_000 == 1:
                log.warning("runs log is %d runs behind; %d runs dropped so far", len(self._buffer), self.dropped)
            return
        self._buffer.append(entry)
        if self._thread is None:
            self._start()
        elif len(self._buffer) >= self._batch:
            # Behind by a batch: wake the writer, and start a new one should
            # it have died (checked only here, off the common path).
            if not self._thread.is_alive():
                self._start(restart=True)
            self._wake.set()

    def record_row(self, relation: RecordClass, row: dict[str, Any]) -> None:
        """Buffer a row of another relation that is written with the runs
        (a model call of a run): ``row`` holds the relation's columns
        (``created_at`` and ``updated_at`` are filled in when missing). Same
        bound as ``record``."""
        if len(self._rows) >= self._max_buffer:
            self.dropped += 1
            return
        self._rows.append((relation, row))
        if self._thread is None:
            self._start()

    def _start(self, restart: bool = False) -> None:
        with self._started:
            if self._thread is None or (restart and not self._thread.is_alive() and not self._stop.is_set()):
                if restart:
                    log.error("the runs log writer thread died; starting a new one")
                _install_exit_hooks()
                self._thread = threading.Thread(target=self._loop, name="tidal-runs", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        pause = 1.0
        while not self._stop.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            try:
                self.flush()
                pause = 1.0
            except Exception:
                # Only errors of the database itself get here (see _write_batch):
                # the runs stay buffered; try again, less often while it lasts.
                self._stop.wait(pause)
                pause = min(pause * 2, 30.0)

    def flush(self) -> int:
        """Write every buffered run now, ``batch`` rows per transaction (so
        that the database's write lock is never held for long); returns how
        many were written. Raises only when the database itself fails; the
        runs then stay buffered."""
        try:
            with self._write_lock:
                return self._flush_locked()
        finally:
            if _term_deferred and threading.current_thread() is threading.main_thread():
                _on_sigterm(signal.SIGTERM, None)  # SIGTERM came during this flush: now it can end the process

    def _flush_locked(self) -> int:
        self._writing = True
        self._owner = threading.get_ident()
        try:
            return self._write_buffer()
        finally:
            self._writing = False
            self._owner = None

    def _write_buffer(self) -> int:
        total = 0
        while self._buffer:
            entries: list[Entry] = []
            while self._buffer and len(entries) < self._batch:
                entries.append(self._buffer.popleft())
            try:
                self._write_batch(entries)
            except _Unavailable as exc:
                # Put the rest back in order so that the next flush retries them.
                self._buffer.extendleft(reversed(entries[exc.done :]))
                self._failure(exc.cause, retrying=True)
                raise exc.cause from None
            self._retrying = False
            total += len(entries)
            self._writes += 1
            if self.sinks:
                self._tell_sinks("runs_written", entries)
            if self._retention is not None and self._writes % 100 == 1:
                try:
                    self.purge()
                except Exception as exc:  # the runs are written; purging waits for the next time
                    self._failure(exc, retrying=False)
        while self._rows:
            total += self._write_rows()
        return total

    def _write_rows(self) -> int:
        """Write up to a batch of the other relations' rows: in one
        transaction, else row by row, dropping (and counting in ``failed``)
        a row the database refuses. Only a failure of the database itself
        puts them back."""
        taken: list[tuple[RecordClass, dict[str, Any]]] = []
        while self._rows and len(taken) < self._batch:
            taken.append(self._rows.popleft())
        now = datetime.now(UTC)
        for _, row in taken:
            row.setdefault("created_at", now)
            row.setdefault("updated_at", now)
        db = self.app.db
        try:
            self._insert(db, taken)
            if self.sinks:
                self._tell_sinks("rows_written", taken)
            return len(taken)
        except Exception as exc:
            if _unavailable(exc):
                self._rows.extendleft(reversed(taken))
                self._failure(exc, retrying=True)
                raise
        for i, item in enumerate(taken):
            try:
                self._insert(db, [item])
            except Exception as exc:
                if _unavailable(exc):
                    self._rows.extendleft(reversed(taken[i:]))
                    self._failure(exc, retrying=True)
                    raise
                self.failed += 1
                self._failure(exc, retrying=False)
                log.error("a %s row could not be stored and is dropped: %s", item[0].relation(), _describe(exc))
        if self.sinks:
            self._tell_sinks("rows_written", taken)
        return len(taken)

    def _tell_sinks(self, what: str, batch: Sequence[Any]) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, what)(batch)
            except Exception:
                log.exception("runs log sink %r failed on a batch; the runs are stored", sink)

    @staticmethod
    def _insert(db: Any, rows: list[tuple[RecordClass, dict[str, Any]]]) -> None:
        by_relation: dict[RecordClass, list[dict[str, Any]]] = {}
        for relation, row in rows:
            by_relation.setdefault(relation, []).append(row)
        # Tables first: registering one (creating it) inside the transaction
        # would wait on the transaction's own lock.
        tables = {relation: db.relation(relation).table for relation in by_relation}
        with db.begin() as conn:
            for relation, values in by_relation.items():
                conn.execute(tables[relation].insert(), values)

    def _write_batch(self, entries: list[Entry]) -> None:
        """Store a batch, or account for every run of it: only a failure of
        the database itself (``_Unavailable``) leaves runs unwritten."""
        try:
            self._write(entries)
            self.written += len(entries)
            return
        except Exception as exc:
            if _unavailable(exc):
                raise _Unavailable(0, exc) from exc
            self._failure(exc, retrying=False)
            log.warning(
                "a batch of %d runs was refused (%s); writing it again run by run", len(entries), _describe(exc)
            )
        # Something in the batch is refused: make every row storable and try
        # the batch again, then row by row to find the rows at fault.
        cleaned = [self._clean(e) for e in entries]
        try:
            self._write([e for e, _ in cleaned])
            self.written += len(entries)
            self.escaped += sum(changed for _, changed in cleaned)
            return
        except Exception as exc:
            if _unavailable(exc):
                raise _Unavailable(0, exc) from exc
        for done, (entry, changed) in enumerate(cleaned):
            try:
                self._write([entry])
                self.written += 1
                self.escaped += changed
                continue
            except Exception as exc:
                if _unavailable(exc):
                    raise _Unavailable(done, exc) from exc
                why = exc
            try:
                self._write([self._reduced(entry, why)])
                self.written += 1
                self.reduced += 1
                log.warning("run %s stored without its props and result: %s", entry.id, _describe(why))
            except Exception as exc:
                if _unavailable(exc):
                    raise _Unavailable(done, exc) from exc
                self.failed += 1
                self._failure(exc, retrying=False)
                log.error(
                    "run %s of %s/%s could not be stored and is dropped (%d so far): %s",
                    entry.id,
                    _escape(entry.component),
                    _escape(entry.instance),
                    self.failed,
                    _describe(exc),
                )

    def _failure(self, exc: BaseException, *, retrying: bool) -> None:
        first = self.last_error is None or not self._retrying
        self.last_error = _describe(exc)
        self.last_error_at = time.time()
        if retrying and first:
            log.warning("writing the runs log failed; will retry: %s", self.last_error)
        self._retrying = retrying

    def _clean(self, entry: Entry) -> tuple[Entry, bool]:
        """``entry`` with text a database can refuse made storable: lone
        surrogates escaped (``_write`` cuts what is too long); props and
        result become JSON text (an orjson fragment, which both writers pass
        on as it is). Returns it and whether it changed."""
        changed = False
        values: dict[str, Any] = {}
        for name in _TEXT_FIELDS:
            text = getattr(entry, name)
            if text is None:
                continue
            text = str(text)
            safe = _escape(text)
            changed |= safe != text
            values[name] = safe
        for name in ("props", "result"):
            value = getattr(entry, name)
            if value is None:
                continue
            try:
                text = json_text(value) or "null"
            except Exception:  # a repr that is not text either: keep what can be said of it
                text = orjson.dumps(f"<{type(value).__name__} that cannot be shown>").decode()
                changed = True
            safe = _escape(text)
            changed |= safe != text
            values[name] = orjson.Fragment(safe)
        return entry._replace(**values), changed

    def _reduced(self, entry: Entry, why: BaseException) -> Entry:
        """What is still worth storing of a run whose row was refused: who,
        when and how it went, and why the rest is missing."""
        note = f"[tidal: run stored without its props and result, its row was refused: {_describe(why)[:1000]}]"
        error = _escape(entry.error)[:10_000] + "\n" + note if entry.error else note
        values: dict[str, Any] = {name: _escape(getattr(entry, name))[:1000] for name in _TEXT_FIELDS}
        values.update(props=None, result=None, error=error)
        return entry._replace(**values)

    def _write(self, entries: list[Entry]) -> None:
        """Insert ``entries`` in one transaction (text over ``max_text``
        cut, counted in ``truncated``)."""
        db = self.app.db
        table = db.relation(relations.Run).table
        if db.dialect == "sqlite":
            self.truncated += self._write_sqlite(db, table, entries)
            return
        now = datetime.now(UTC)
        cap = self.max_text
        capped = 0
        rows = []
        for e in entries:
            begun = datetime.fromtimestamp(e.started, UTC)
            p, r, error = json_text(e.props), json_text(e.result), e.error
            if (p and len(p) > cap) or (r and len(r) > cap) or (error and len(error) > cap):
                p, r, error = _cap_json(p, cap), _cap_json(r, cap), _cap_text(error, cap)
                capped += 1
            rows.append(
                {
                    "id": e.id,
                    "created_at": now,
                    "updated_at": now,
                    "component": e.component,
                    "instance": e.instance,
                    "flow": e.flow,
                    "kind": e.kind,
                    "status": e.status,
                    "props": None if p is None else orjson.loads(p),
                    "result": None if r is None else orjson.loads(r),
                    "cached": e.cached,
                    "version_read": e.version_read,
                    "version_written": e.version_written,
                    "op_id": e.op_id,
                    "latency_ms": e.latency * 1000.0,
                    "error": error,
                    "started_at": begun,
                    "finished_at": begun + timedelta(seconds=e.latency),
                    "waited_ms": None if e.waited is None else e.waited * 1000.0,
                    "variants": e.variants,
                }
            )
        with db.begin() as conn:
            conn.execute(table.insert(), rows)
        self.truncated += capped

    def _write_sqlite(self, db: Any, table: Any, entries: list[Entry]) -> int:
        # SQLAlchemy's per-value type processing costs ~40 us a row here, more
        # than everything else put together; on SQLite the values are simple
        # to encode by hand in the layout SQLAlchemy itself reads back
        # (datetimes as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC, JSON as text).
        columns = [c.name for c in table.columns]
        if columns != _run_columns():  # pragma: no cover - a table made by another Run definition
            raise RuntimeError(f"runs table has columns {columns}, expected {_run_columns()}")
        sql = f'INSERT INTO "{table.name}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
        now = _sqlite_time(time.time())
        cap = self.max_text
        capped = 0
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        for (run_id, comp, inst, flow, kind, status, props, result, cached, v_read, v_written, op_id, started,
             latency, error, waited, variants) in entries:  # fmt: skip
            p, r = json_text(props), json_text(result)
            if (p and len(p) > cap) or (r and len(r) > cap) or (error and len(error) > cap):
                p, r, error = _cap_json(p, cap), _cap_json(r, cap), _cap_text(error, cap)
                capped += 1
            append(
                (run_id, now, now, comp, inst, flow, kind, status, p, r, int(cached), v_read, v_written, op_id,
                 latency * 1000.0, error, _sqlite_time(started), _sqlite_time(started + latency),
                 None if waited is None else waited * 1000.0, None if variants is None else json_text(variants))
            )  # fmt: skip
        with db.begin() as conn:
            # The driver's own executemany: SQLAlchemy would inspect every row.
            conn.connection.dbapi_connection.executemany(sql, rows)
        return capped

    def purge(self) -> int:
        """Delete runs older than the retention period."""
        if self._retention is None:
            return 0
        db = self.app.db
        table = db.relation(relations.Run).table
        cutoff = datetime.now(UTC) - self._retention
        with db.begin() as conn:
            return int(conn.execute(table.delete().where(table.c.created_at < cutoff)).rowcount or 0)

    def close(self) -> None:
        """Stop the writer after writing what is buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        self._flush_before_exit(None)
        _logs.discard(self)
        self._close_sinks()

    def _close_sinks(self) -> None:
        """Tell the sinks that no more runs come (close, or the process exits)."""
        for sink in list(self.sinks):
            try:
                sink.close()
            except Exception:
                log.exception("closing runs log sink %r failed", sink)

    def _flush_before_exit(self, timeout: float | None) -> None:
        """Write what is buffered; what cannot be written now is counted in
        ``lost`` and logged: nothing will try again."""
        if not self.pending:
            return
        if not self._write_lock.acquire(timeout=-1 if timeout is None else timeout):
            self._lose("the writer is stuck in a write")
            return
        try:
            self._flush_locked()
        except Exception as exc:
            self._lose(_describe(exc))
        finally:
            self._write_lock.release()
        if _term_deferred and threading.current_thread() is threading.main_thread():
            _on_sigterm(signal.SIGTERM, None)  # SIGTERM came during this flush (see _on_sigterm)

    def _lose(self, why: str) -> None:
        lost = len(self._buffer) + len(self._rows)
        self._buffer.clear()
        self._rows.clear()
        self.lost += lost
        log.error("%d runs of app %r lost at shutdown: %s", lost, self.app.name, why)

    @property
    def pending(self) -> int:
        """Runs not yet in the database: buffered, or (as 1) a batch being written."""
        return len(self._buffer) + len(self._rows) + int(self._writing)

    def stats(self) -> RunLogStats:
        """The writer's counters and state (see ``RunLogStats``); cheap, and
        safe to call from any thread."""
        buffer = self._buffer
        behind = 0.0
        try:
            oldest = buffer[0]
            behind = max(0.0, time.time() - oldest.started - oldest.latency)
        except IndexError:
            pass
        thread = self._thread
        alive = (thread.is_alive() if thread is not None else True) and not self._stop.is_set()
        return RunLogStats(
            written=self.written,
            truncated=self.truncated,
            escaped=self.escaped,
            reduced=self.reduced,
            failed=self.failed,
            dropped=self.dropped,
            lost=self.lost,
            pending=self.pending,
            behind_s=round(behind, 3),
            alive=alive,
            retrying=self._retrying,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            pid=self._pid,
        )


def _escape(text: str | None) -> str:
    """``text`` as valid UTF-8: what cannot be encoded (lone surrogates)
    written as ``\\udxxx`` escapes."""
    if text is None:
        return ""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cap_text(text: str | None, cap: int) -> str | None:
    """``text`` cut to ``cap`` characters, with a marker saying so."""
    if text is None or len(text) <= cap:
        return text
    return f"{text[:cap]}\n[tidal: cut to {cap} of {len(text)} characters]"


def _cap_json(text: str | None, cap: int) -> str | None:
    """JSON ``text`` over ``cap`` characters replaced by a JSON object that
    says so and keeps its beginning (cut JSON would not read back)."""
    if text is None or len(text) <= cap:
        return text
    head = text[: min(cap // 2, 10_000)]
    return orjson.dumps({"tidal_truncated": True, "json_chars": len(text), "head": head}).decode()


def _describe(exc: BaseException) -> str:
    return _escape(f"{type(exc).__name__}: {exc}")[:2000]


_TRANSIENT_SQLITE = ("locked", "busy", "unable to open", "disk i/o", "full", "readonly", "read-only")


def _unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is the database failing (so a retry may succeed)
    rather than it refusing what was written."""
    import sqlite3

    import sqlalchemy as sa

    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        return any(word in text for word in _TRANSIENT_SQLITE)
    # PostgreSQL: the server or the connection to it.
    return isinstance(exc, sa.exc.OperationalError | sa.exc.DisconnectionError | sa.exc.TimeoutError)


# -- processes --------------------------------------------------------------


def _before_fork() -> None:
    """Load what the writer needs (SQLAlchemy, pydantic, numpy for the Run
    record: ~0.5 s of imports, deferred until the first write) before a
    process whose runs log is in use forks: once here, instead of in every
    child, which writes the runs of its updates (at the latest when it
    exits) and would otherwise pay for the imports there, each child
    competing with its siblings for the CPU (a gunicorn master that served,
    a multiprocessing parent). Done in the forking thread, so that no import
    is half done in another thread at the fork."""
    if any(runlog._pid == os.getpid() and not runlog._stop.is_set() for runlog in list(_logs)):
        relations.load()  # here, before the fork, for the children
    # No batch of runs half written at the fork (SQLite's per-process lock
    # bookkeeping would leave the child's database locked: see
    # tidal.stores.sqlite.connections): each log's write lock, for a bounded time.
    for runlog in list(_logs):
        if runlog._pid == os.getpid():
            runlog._held_for_fork = runlog._write_lock.acquire(timeout=10.0)


def _after_fork_in_parent() -> None:
    for runlog in list(_logs):
        if getattr(runlog, "_held_for_fork", False):
            runlog._held_for_fork = False
            runlog._write_lock.release()


def _after_fork_in_child() -> None:
    for runlog in list(_logs):
        runlog._fresh_process()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


def _flush_all(timeout: float | None = None) -> None:
    """Write what every runs log of this process has buffered (at exit)."""
    for runlog in list(_logs):
        if runlog._pid == os.getpid():
            try:
                runlog._flush_before_exit(timeout)
                runlog._close_sinks()
            except Exception:  # pragma: no cover - exit hooks must not raise
                log.exception("writing the runs log at exit failed")


atexit.register(_flush_all)

_hooked_pid: int | None = None


def _install_exit_hooks() -> None:
    """Once per process (a forked child included), when its first runs log
    starts: multiprocessing's exit finalizers (its children end with
    ``os._exit``, past atexit; a child's registry starts empty, so this is
    done in the child) and, from the main thread, a SIGTERM handler if
    SIGTERM has none (its default ends the process without atexit)."""
    global _hooked_pid
    if _hooked_pid == os.getpid():
        return
    _hooked_pid = os.getpid()
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _flush_all, args=(EXIT_FLUSH_S,), exitpriority=10)
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):  # pragma: no cover - not the main interpreter
            pass


_term_deferred = False
"""SIGTERM came while the main thread was writing runs (see _on_sigterm)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM's default, after writing buffered runs: the process still
    dies of the signal (its exit status unchanged). The writing runs in a
    thread of its own, bounded by ``EXIT_FLUSH_S``: this handler interrupts
    the main thread anywhere. If that is in a flush (an exit hook, app.sql),
    the flush holds the write lock and cannot go on while this waits: the
    handler returns, and the flush calls it again once it is done."""
    global _term_deferred
    me = threading.get_ident()
    if any(runlog._owner == me for runlog in list(_logs)):
        _term_deferred = True
        return
    _term_deferred = False
    if any(runlog.pending for runlog in list(_logs)):
        writer = threading.Thread(target=_flush_all, args=(EXIT_FLUSH_S,), name="tidal-runs-exit", daemon=True)
        writer.start()
        writer.join(EXIT_FLUSH_S + 1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def now() -> float:
    return time.time()
