"""The trace exporter: runs and model calls sent as OpenTelemetry spans (OTLP).

A :class:`TraceExporter` is a sink of the runs log (:class:`RunSink`): the
log's writer thread hands it each batch it stored (an append to a bounded
queue), and a thread of the exporter's own builds the spans
(:mod:`tidal.engine.spans`) and sends them with the SDK's OTLP/HTTP exporter,
``max_batch`` spans a request. Nothing of this runs on the serve path, and
nothing in it waits on the receiver but that thread: with the receiver down
or slow, what does not fit in the queue is dropped and counted
(``stats().dropped``), what the receiver refused is counted in ``failed``,
and the runs log and the app go on as before.

OpenTelemetry is an optional dependency (``pip install 'tidal[traces]'``),
imported when an exporter is made, never with Tidal.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .. import constants
from ..exceptions import ConfigError
from ..types import RecordClass
from .runlog import Entry, RunSink
from .spans import Span, call_span, run_span

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

log = logging.getLogger("tidal.traces")

MISSING_EXTRA = "exporting traces needs OpenTelemetry's SDK and OTLP exporter: pip install 'tidal[traces]'"


@dataclass(frozen=True)
class TraceStats:
    """How a trace exporter is doing (``TraceExporter.stats()``)."""

    exported: int
    """Spans the receiver accepted."""
    failed: int
    """Spans the receiver refused or never answered for (after the OTLP
    exporter's own retries)."""
    dropped: int
    """Spans never sent because the queue was full (the receiver down or
    far slower than the app) or the exporter was closed."""
    pending: int
    """Runs and model calls handed over and not yet sent."""
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TraceExporter(RunSink):
    """Sends what a runs log writes to an OTLP/HTTP receiver (Phoenix,
    Langfuse, Jaeger, an OpenTelemetry Collector). Made by
    ``app.export_traces(...)``; see docs/traces.md."""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        service_name: str = constants.DEFAULT_APP_NAME,
        resource: Mapping[str, str] | None = None,
        timeout: float = constants.OTLP_TIMEOUT_S,
        max_queue: int = constants.OTLP_MAX_QUEUE,
        max_batch: int = constants.OTLP_MAX_BATCH,
        flush_seconds: float = constants.OTLP_FLUSH_S,
    ) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import Event, ReadableSpan
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
            from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
        except ImportError as exc:
            raise ConfigError(f"{MISSING_EXTRA} ({exc})") from exc
        self.endpoint = endpoint
        self._exporter_type = OTLPSpanExporter
        self._exporter_args: dict[str, Any] = {
            "endpoint": endpoint,
            "headers": dict(headers) if headers is not None else None,
            "timeout": timeout,
        }
        self._otel = _Otel(ReadableSpan, Event, SpanContext, Link, SpanKind, Status, StatusCode, TraceFlags)
        self._resource = Resource.create({"service.name": service_name, **(resource or {})})
        self._scope = InstrumentationScope("tidal")
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._flush_seconds = flush_seconds
        self._closed = False
        self._fresh_process()

    def _fresh_process(self) -> None:
        """What belongs to one process (again in a forked child, where the
        thread is gone and the parent's HTTP connections are the parent's)."""
        self._pid = os.getpid()
        self._exporter = self._exporter_type(**self._exporter_args)
        self._queue: deque[tuple[str, Sequence[Any]]] = deque()
        self._queued = 0
        self._busy = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.exported = 0
        self.failed = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._failing = False

    # -- the runs log's side: an append, never a wait ----------------------

    def runs_written(self, entries: Sequence[Entry]) -> None:
        self._offer("run", entries)

    def rows_written(self, rows: Sequence[tuple[RecordClass, dict[str, Any]]]) -> None:
        calls = [row for relation, row in rows if relation.relation() == "model_calls"]
        if calls:
            self._offer("call", calls)

    def _offer(self, kind: str, items: Sequence[Any]) -> None:
        if self._pid != os.getpid():
            self._fresh_process()
        if self._closed:
            self.dropped += len(items)
            return
        with self._lock:
            if self._queued + len(items) > self._max_queue:
                self.dropped += len(items)
                if not self._failing:
                    log.warning("trace export to %s is behind; dropping spans (see stats().dropped)", self.endpoint)
                    self._failing = True
                return
            self._queue.append((kind, items))
            self._queued += len(items)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tidal-traces", daemon=True)
            self._thread.start()
        if self._queued >= self._max_batch:
            self._wake.set()

    # -- the exporter's thread ---------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            self._send_queued()
        self._send_queued()

    def _send_queued(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._idle.notify_all()
                    return
                taken = list(self._queue)
                self._queue.clear()
                count = sum(len(items) for _, items in taken)
                self._queued -= count
                self._busy += count
            try:
                self._send(taken)
            finally:
                with self._lock:
                    self._busy -= count

    def _send(self, taken: list[tuple[str, Sequence[Any]]]) -> None:
        spans: list[ReadableSpan] = []
        for kind, items in taken:
            for item in items:
                try:
                    spans.append(self._readable(run_span(item) if kind == "run" else call_span(item)))
                except Exception as exc:  # one odd run must not stop the others
                    self.failed += 1
                    self._error(f"building a span failed: {type(exc).__name__}: {exc}")
        for start in range(0, len(spans), self._max_batch):
            chunk = spans[start : start + self._max_batch]
            try:
                ok = self._exporter.export(chunk).name == "SUCCESS"
                why = "the receiver refused the spans or did not answer"
            except Exception as exc:
                ok, why = False, f"{type(exc).__name__}: {exc}"
            if ok:
                self.exported += len(chunk)
                self._failing = False
            else:
                self.failed += len(chunk)
                self._error(f"exporting {len(chunk)} spans to {self.endpoint} failed: {why}")

    def _error(self, text: str) -> None:
        if not self._failing:
            log.warning("%s (counted in stats().failed)", text)
        self.last_error = text
        self._failing = True

    def _readable(self, span: Span) -> ReadableSpan:
        o = self._otel
        flags = o.TraceFlags(o.TraceFlags.SAMPLED)
        context = o.SpanContext(span.trace_id, span.span_id, is_remote=False, trace_flags=flags)
        parent = None
        if span.parent_id is not None:
            parent = o.SpanContext(span.trace_id, span.parent_id, is_remote=False, trace_flags=flags)
        links = [o.Link(o.SpanContext(t, s, is_remote=False, trace_flags=flags)) for t, s in span.links]
        status = o.Status(o.StatusCode.ERROR, span.error) if span.error is not None else o.Status(o.StatusCode.UNSET)
        readable: ReadableSpan = o.ReadableSpan(
            name=span.name,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=span.attributes,
            events=[o.Event(e.name, dict(e.attributes), e.time_ns) for e in span.events],
            links=links,
            kind=o.SpanKind.CLIENT if span.client else o.SpanKind.INTERNAL,
            status=status,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=self._scope,
        )
        return readable

    # -- control -----------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> bool:
        """Send what was handed over so far; True once done (False: the
        timeout passed first). The runs log's own buffer is not included:
        ``app.flush_runs()`` first."""
        if self._thread is None or self._pid != os.getpid():
            return not self._queued
        self._wake.set()
        with self._idle:
            return self._idle.wait_for(lambda: not self._queued and not self._busy, timeout)

    def close(self, timeout: float = constants.OTLP_CLOSE_S) -> None:
        """Send what is queued (for at most ``timeout`` seconds) and stop."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout)
        with self._lock:
            lost = self._queued
            self._queue.clear()
            self._queued = 0
        self.dropped += lost
        try:
            self._exporter.shutdown()  # type: ignore[no-untyped-call]  # the SDK's own hints stop short here
        except Exception:  # pragma: no cover - shutting down must not raise
            log.exception("shutting down the OTLP exporter failed")

    def stats(self) -> TraceStats:
        """The exporter's counters (cheap; any thread)."""
        return TraceStats(
            exported=self.exported,
            failed=self.failed,
            dropped=self.dropped,
            pending=self._queued + self._busy,
            last_error=self.last_error,
        )

    def __repr__(self) -> str:
        return f"<TraceExporter to {self.endpoint}>"


@dataclass(frozen=True)
class _Otel:
    """The SDK's classes, imported when an exporter is made."""

    ReadableSpan: Any
    Event: Any
    SpanContext: Any
    Link: Any
    SpanKind: Any
    Status: Any
    StatusCode: Any
    TraceFlags: Any
