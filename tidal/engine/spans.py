"""Runs and model calls as trace spans: their names, ids and attributes.

Plain data, no OpenTelemetry import: :mod:`tidal.engine.traces` turns each
:class:`Span` into the SDK's span and sends it. Model calls follow the
OpenTelemetry GenAI semantic conventions; what is Tidal's own is ``tidal.*``.

=============================  ==============================================
run (``serve C.flow`` /        ``tidal.component``, ``.instance``, ``.flow``,
``update C.flow``)             ``.kind``, ``.status``, ``.run_id``,
                               ``.version`` (read by a serve, written by an
                               update), ``.cached``, ``.op_id``,
                               ``.waited_ms``; ``error.type`` and an
                               ``exception`` event when it failed
model call (``chat MODEL``,    ``gen_ai.operation.name``, ``gen_ai.provider.name``
``text_completion MODEL``,     (and the older ``gen_ai.system``),
``embeddings MODEL``)          ``gen_ai.request.model``, ``gen_ai.request.*``
                               (temperature, top_p, top_k, max_tokens, seed,
                               stop_sequences, choice.count, penalties),
                               ``gen_ai.usage.input_tokens`` / ``output_tokens``
                               / ``cache_read.input_tokens``,
                               ``gen_ai.response.time_to_first_chunk``,
                               ``server.address`` / ``server.port``,
                               ``error.type``; ``tidal.cost_usd``,
                               ``tidal.cache_hit``, ``tidal.retries``, ...
tool call (``execute_tool      ``gen_ai.tool.name``, ``gen_ai.tool.call.id``,
NAME``)                        ``gen_ai.tool.type``; a link to the run the
                               tool started (a flow as a tool)
=============================  ==============================================

Ids are derived from Tidal's ids, so that spans made apart (a run's model
calls may be written before the run itself) still fit together: a run is
the root of a trace of its own (trace and span id from its run id); its
model calls are its children, and a call made for another (a tool call, a
sampling decision: ``parent_call``) is that call's child.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:
    from .runlog import Entry

Attributes = dict[str, str | bool | int | float | list[str]]

OPERATIONS = {
    "chat": "chat",
    "stream": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
    "tool": "execute_tool",
}
"""``model_calls.operation`` -> ``gen_ai.operation.name``. A ``decision``
(which of several candidates a sampling helper kept) is no model call: its
span is Tidal's own (``tidal.decision MODEL``)."""

REQUEST_SETTINGS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "stop": "gen_ai.request.stop_sequences",
    "n": "gen_ai.request.choice.count",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
}
"""Sampling settings (``model_calls.params``) -> GenAI request attributes."""

PROVIDERS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.mistral.ai": "mistral_ai",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "api.cohere.com": "cohere",
}
"""Hosts of hosted APIs -> their ``gen_ai.provider.name``. Other servers
speak OpenAI's API without being OpenAI: ``ollama`` on Ollama's port,
``tidal`` for Tidal's local embedder, else ``openai_compatible``."""

OPENINFERENCE_KINDS = {"chat": "LLM", "text_completion": "LLM", "embeddings": "EMBEDDING", "execute_tool": "TOOL"}
"""``openinference.span.kind``, which Arize Phoenix reads to show a span's
kind (it is not part of the OpenTelemetry conventions)."""

MAX_ERROR_CHARS = 4000
"""The most characters of an error's text a span carries."""


@dataclass(frozen=True)
class Event:
    name: str
    time_ns: int
    attributes: Attributes


@dataclass(frozen=True)
class Span:
    """One span, ready to be handed to an exporter."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    start_ns: int
    end_ns: int
    client: bool
    """A call to another service (SpanKind CLIENT) rather than work in this
    process (INTERNAL)."""
    attributes: Attributes
    error: str | None = None
    """The status description of a failed run or call (None: not failed)."""
    events: tuple[Event, ...] = ()
    links: tuple[tuple[int, int], ...] = field(default=())
    """(trace id, span id) of spans this one led to (a tool's child run)."""


def ids(key: str) -> tuple[int, int]:
    """The (trace id, span id) that Tidal's id ``key`` stands for: the same
    in every process, never 0 (an invalid id to OpenTelemetry)."""
    digest = hashlib.blake2b(key.encode(), digest_size=24).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:], "big") or 1


def _ns(epoch: float) -> int:
    """Epoch seconds as nanoseconds, to the microsecond the runs log stores
    (rounded the same way, so that a span's times are its row's)."""
    whole = int(epoch)
    return whole * 1_000_000_000 + int((epoch - whole) * 1_000_000) * 1000


def run_span(entry: Entry) -> Span:
    """The span of one run."""
    trace_id, span_id = ids(entry.id)
    version = entry.version_written if entry.version_written is not None else entry.version_read
    attributes: Attributes = {
        "tidal.component": entry.component,
        "tidal.instance": entry.instance,
        "tidal.flow": entry.flow,
        "tidal.kind": entry.kind,
        "tidal.status": entry.status,
        "tidal.run_id": entry.id,
        "tidal.cached": bool(entry.cached),
        "openinference.span.kind": "CHAIN",
    }
    if version is not None:
        attributes["tidal.version"] = version
    if entry.op_id is not None:
        attributes["tidal.op_id"] = entry.op_id
    if entry.waited is not None:
        attributes["tidal.waited_ms"] = entry.waited * 1000.0
    start = _ns(entry.started)
    end = max(start, _ns(entry.started + entry.latency))
    error: str | None = None
    events: tuple[Event, ...] = ()
    if entry.status == "error":
        kind, message = _exception(entry.error)
        attributes["error.type"] = kind
        error = f"{kind}: {message}" if message else kind
        detail: Attributes = {"exception.type": kind, "exception.message": message}
        if entry.error:
            detail["exception.stacktrace"] = entry.error[-MAX_ERROR_CHARS:]
        events = (Event("exception", end, detail),)
    return Span(
        name=f"{entry.kind} {entry.component}.{entry.flow}",
        trace_id=trace_id,
        span_id=span_id,
        parent_id=None,
        start_ns=start,
        end_ns=end,
        client=False,
        attributes=attributes,
        error=error,
        events=events,
    )


def call_span(row: Mapping[str, Any]) -> Span:
    """The span of one ``model_calls`` row."""
    call_id: str = row["id"]
    run_id: str = row.get("run_id") or ""
    parent_call: str | None = row.get("parent_call")
    trace_id = ids(run_id or parent_call or call_id)[0]
    span_id = ids(call_id)[1]
    parent_id = ids(parent_call)[1] if parent_call else ids(run_id)[1] if run_id else None
    operation: str = row.get("operation") or "chat"
    model: str = row.get("model") or ""
    endpoint: str = row.get("endpoint") or ""
    raw_note = row.get("note")
    note: dict[str, Any] = raw_note if isinstance(raw_note, dict) else {}
    gen_op = OPERATIONS.get(operation)
    attributes: Attributes = {"tidal.call_id": call_id, "tidal.operation": operation}
    for name in ("run_id", "component", "instance", "flow"):
        if row.get(name):
            attributes[f"tidal.{name}"] = row[name]
    links: tuple[tuple[int, int], ...] = ()
    if gen_op is None:
        name = f"tidal.{operation} {model}"
        if note:
            attributes["tidal.note"] = _json(note)
    elif gen_op == "execute_tool":
        tool = str(note.get("tool") or "tool")
        name = f"execute_tool {tool}"
        attributes.update({"gen_ai.operation.name": gen_op, "gen_ai.tool.name": tool, "gen_ai.tool.type": "function"})
        if note.get("tool_call_id"):
            attributes["gen_ai.tool.call.id"] = str(note["tool_call_id"])
        if note.get("child_run"):
            attributes["tidal.child_run"] = str(note["child_run"])
            links = (ids(str(note["child_run"])),)
    else:
        name = f"{gen_op} {model}"
        provider = provider_name(endpoint)
        attributes.update(
            {
                "gen_ai.operation.name": gen_op,
                "gen_ai.provider.name": provider,
                "gen_ai.system": provider,
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": int(row.get("prompt_tokens") or 0),
                "gen_ai.usage.output_tokens": int(row.get("completion_tokens") or 0),
            }
        )
        if row.get("cached_tokens"):
            attributes["gen_ai.usage.cache_read.input_tokens"] = int(row["cached_tokens"])
        if operation == "stream":
            attributes["gen_ai.request.stream"] = True
        if row.get("ttft_ms") is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = row["ttft_ms"] / 1000.0
        for setting, value in (row.get("params") or {}).items():
            key = REQUEST_SETTINGS.get(setting)
            if key is None or value is None:
                continue
            if setting == "stop":
                attributes[key] = [value] if isinstance(value, str) else [str(v) for v in value]
            elif isinstance(value, bool | int | float | str):
                attributes[key] = value
        address, port = server(endpoint)
        if address:
            attributes["server.address"] = address
        if port:
            attributes["server.port"] = port
    if gen_op in OPENINFERENCE_KINDS:
        attributes["openinference.span.kind"] = OPENINFERENCE_KINDS[gen_op]
    attributes["tidal.cost_usd"] = float(row.get("cost") or 0.0)
    attributes["tidal.retries"] = int(row.get("retries") or 0)
    attributes["tidal.latency_ms"] = float(row.get("latency_ms") or 0.0)
    if row.get("cache_hit"):
        attributes["tidal.cache_hit"] = str(row["cache_hit"])
    if row.get("similarity") is not None:
        attributes["tidal.similarity"] = float(row["similarity"])
    started: datetime | None = row.get("started_at")
    start = _ns(started.timestamp()) if started is not None else 0
    end = start + int((row.get("latency_ms") or 0.0) * 1_000_000)
    error = None
    if row.get("status") == "error":
        kind, message = _exception(row.get("error"))
        attributes["error.type"] = kind
        error = f"{kind}: {message}" if message else kind
    return Span(
        name=name,
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        start_ns=start,
        end_ns=end,
        client=gen_op is not None and gen_op != "execute_tool",
        attributes=attributes,
        error=error,
        links=links,
    )


def provider_name(endpoint: str) -> str:
    """``gen_ai.provider.name`` for a model endpoint's base URL."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if parts.scheme == "local":
        return "tidal"
    if host in PROVIDERS:
        return PROVIDERS[host]
    if host.endswith(".openai.azure.com"):
        return "azure.ai.openai"
    if parts.port == 11434:
        return "ollama"
    return "openai_compatible"


def server(endpoint: str) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port`` of an endpoint's base URL."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    return parts.hostname, port


def _exception(text: str | None) -> tuple[str, str]:
    """(type, message) from an error's text: a traceback's last line or
    ``Type: message``; ``_OTHER`` (the conventions' fallback) when it names
    no type."""
    if not text:
        return "_OTHER", ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    kind, sep, message = last.partition(":")
    if sep and kind and all(part.isidentifier() for part in kind.split(".")):
        return kind, message.strip()[:MAX_ERROR_CHARS]
    if last.isidentifier():
        return last, ""
    return "_OTHER", last[:MAX_ERROR_CHARS]


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=repr).decode()[:MAX_ERROR_CHARS]
    except TypeError:
        return repr(value)[:MAX_ERROR_CHARS]
