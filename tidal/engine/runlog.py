"""The runs log: the batched writer of the built-in ``runs`` relation.

Every serve and update run is recorded as a row of ``runs``. Recording costs
the caller only an id and an append to a buffer; a writer thread turns the
buffer into rows (JSON-encoding props and results there, off the hot path)
and inserts them in batches. ``flush()`` (called by ``feedback``, ``sql``
and a clean shutdown) writes what is buffered, so nothing is lost on a clean
exit. ``feedback`` on a run is a relation too, so it can trigger updates.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel

from ..relations.builtin import Run

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("tidal.runs")


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


_RUN_COLUMNS = [*Run.model_fields]


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError


# (id, component, instance, flow, kind, status, props, result, cached,
#  version_read, version_written, op_id, started (epoch s), latency (s), error,
#  waited in the queue (s) or None)
Entry = tuple[
    str, str, str, str, str, str, Any, Any, bool, int | None, int | None, int | None, float, float, str | None,
    float | None,
]  # fmt: skip


class RunLog:
    """Buffers runs and writes them to the ``runs`` relation in batches."""

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
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count(1)
        self._flush_seconds = flush_seconds
        self._batch = batch
        self._max_buffer = max_buffer
        self._retention = retention
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = threading.Lock()
        self._writes = 0
        self._writing = False
        """Whether a flush is writing a batch it took from the buffer."""
        self.written = 0
        self.dropped = 0

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
            self._wake.set()

    def _start(self) -> None:
        with self._started:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tidal-runs", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("writing the runs log failed; will retry")
                self._stop.wait(1.0)

    def flush(self) -> int:
        """Write every buffered run now, ``batch`` rows per transaction (so
        that the database's write lock is never held for long); returns how
        many were written."""
        with self._write_lock:
            self._writing = True
            try:
                return self._write_buffer()
            finally:
                self._writing = False

    def _write_buffer(self) -> int:
        total = 0
        while self._buffer:
            entries: list[Entry] = []
            while self._buffer and len(entries) < self._batch:
                entries.append(self._buffer.popleft())
            try:
                self._write(entries)
            except Exception:
                # Put them back in order so that the next flush retries them.
                self._buffer.extendleft(reversed(entries))
                raise
            total += len(entries)
            self.written += len(entries)
            self._writes += 1
            if self._retention is not None and self._writes % 100 == 1:
                self.purge()
        return total

    def _write(self, entries: list[Entry]) -> None:
        db = self.app.db
        table = db.relation(Run).table
        if db.dialect == "sqlite":
            self._write_sqlite(db, table, entries)
            return
        now = datetime.now(UTC)
        rows = []
        for (run_id, comp, inst, flow, kind, status, props, result, cached, v_read, v_written, op_id, started,
             latency, error, waited) in entries:  # fmt: skip
            begun = datetime.fromtimestamp(started, UTC)
            rows.append(
                {
                    "id": run_id,
                    "created_at": now,
                    "updated_at": now,
                    "component": comp,
                    "instance": inst,
                    "flow": flow,
                    "kind": kind,
                    "status": status,
                    "props": jsonable(props),
                    "result": jsonable(result),
                    "cached": cached,
                    "version_read": v_read,
                    "version_written": v_written,
                    "op_id": op_id,
                    "latency_ms": latency * 1000.0,
                    "error": error,
                    "started_at": begun,
                    "finished_at": begun + timedelta(seconds=latency),
                    "waited_ms": None if waited is None else waited * 1000.0,
                }
            )
        with db.begin() as conn:
            conn.execute(table.insert(), rows)

    def _write_sqlite(self, db: Any, table: Any, entries: list[Entry]) -> None:
        # SQLAlchemy's per-value type processing costs ~40 us a row here, more
        # than everything else put together; on SQLite the values are simple
        # to encode by hand in the layout SQLAlchemy itself reads back
        # (datetimes as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC, JSON as text).
        columns = [c.name for c in table.columns]
        if columns != _RUN_COLUMNS:  # pragma: no cover - a table made by another Run definition
            raise RuntimeError(f"runs table has columns {columns}, expected {_RUN_COLUMNS}")
        sql = f'INSERT INTO "{table.name}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
        now = _sqlite_time(time.time())
        rows = [
            (run_id, now, now, comp, inst, flow, kind, status, json_text(props), json_text(result), int(cached),
             v_read, v_written, op_id, latency * 1000.0, error, _sqlite_time(started),
             _sqlite_time(started + latency), None if waited is None else waited * 1000.0)
            for (run_id, comp, inst, flow, kind, status, props, result, cached, v_read, v_written, op_id, started,
                 latency, error, waited) in entries
        ]  # fmt: skip
        with db.begin() as conn:
            # The driver's own executemany: SQLAlchemy would inspect every row.
            conn.connection.dbapi_connection.executemany(sql, rows)

    def purge(self) -> int:
        """Delete runs older than the retention period."""
        if self._retention is None:
            return 0
        db = self.app.db
        table = db.relation(Run).table
        cutoff = datetime.now(UTC) - self._retention
        with db.begin() as conn:
            return int(conn.execute(table.delete().where(table.c.created_at < cutoff)).rowcount or 0)

    def close(self) -> None:
        """Stop the writer after writing what is buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.flush()
        except Exception:
            log.exception("runs lost at shutdown: %d", len(self._buffer))

    @property
    def pending(self) -> int:
        """Runs not yet in the database: buffered, or (as 1) a batch being written."""
        return len(self._buffer) + int(self._writing)


def now() -> float:
    return time.time()
