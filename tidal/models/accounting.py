"""Every model call becomes a row of ``model_calls``, part of its run.

The row is handed to the app's runs log (a buffer append; its writer thread
inserts it with the runs), so recording costs the caller about a
microsecond. Which app: the one whose op is running (``tidal.context``),
else the one the model was connected with; with neither, or with the runs
log off, the call is not recorded.
"""

from __future__ import annotations

import itertools
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from ..context import CurrentRun, current_run
from ..relations.builtin import ModelCall

_prefix = uuid.uuid4().hex[:12]
_counter = itertools.count(1)
_pid = os.getpid()


def new_call_id() -> str:
    """A model call id unique across processes."""
    global _prefix, _counter, _pid
    if os.getpid() != _pid:  # a forked child: ids of its own
        _prefix, _counter, _pid = uuid.uuid4().hex[:12], itertools.count(1), os.getpid()
    return f"mc{_prefix}{next(_counter):010x}"


def where(default_app: Any) -> tuple[CurrentRun | None, Any]:
    """The run this call belongs to (if in an op) and the app it is recorded in."""
    run = current_run.get()
    return run, run.runtime if run is not None else default_app


def record(
    app: Any,
    run: CurrentRun | None,
    *,
    call_id: str,
    model: str,
    endpoint: str,
    operation: str,
    started: float,
    latency: float,
    status: str = "ok",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cached_tokens: int = 0,
    cost: float = 0.0,
    ttft: float | None = None,
    retries: int = 0,
    cache_hit: str | None = None,
    similarity: float | None = None,
    params: dict[str, Any] | None = None,
    error: str | None = None,
    parent_call: str | None = None,
    note: Any = None,
) -> None:
    """Buffer one ``model_calls`` row in ``app``'s runs log (nothing without one)."""
    if app is None:
        return
    runlog = app.runlog
    if runlog is None:
        return
    runlog.record_row(
        ModelCall,
        {
            "id": call_id,
            "run_id": run.id if run is not None else "",
            "component": run.component if run is not None else "",
            "instance": run.instance if run is not None else "",
            "flow": run.flow if run is not None else "",
            "model": model,
            "endpoint": endpoint,
            "operation": operation,
            "status": status,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cached_tokens": cached_tokens,
            "cost": cost,
            "latency_ms": latency * 1000.0,
            "ttft_ms": None if ttft is None else ttft * 1000.0,
            "retries": retries,
            "cache_hit": cache_hit,
            "similarity": similarity,
            "params": params or None,
            "error": error[:10_000] if error else None,
            "started_at": datetime.fromtimestamp(started, UTC),
            "parent_call": parent_call,
            "note": note,
        },
    )
