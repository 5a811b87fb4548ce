"""The built-in relations every app has: ``runs``, ``feedback``,
``model_calls``, ``guard_violations`` and ``experiment_pins``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .record import Record


class Run(Record):
    """One serve or update run (the ``runs`` relation; ``id`` is the run id)."""

    __relation__ = "runs"

    component: str
    instance: str
    flow: str
    kind: str
    """``serve`` or ``update``."""
    status: str
    """``ok``, ``error`` or ``discarded``."""
    props: Any = None
    result: Any = None
    cached: bool = False
    version_read: int | None = None
    version_written: int | None = None
    op_id: int | None = None
    latency_ms: float = 0.0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    waited_ms: float | None = None
    """For update runs: how long the op waited in the queue before it ran."""
    variants: dict[str, str] | None = None
    """For components with :class:`tidal.Variants` params: the instance's
    variant of each (param -> variant name)."""


class Feedback(Record):
    """Feedback on a run (the ``feedback`` relation)."""

    __relation__ = "feedback"

    run_id: str
    component: str = ""
    instance: str = ""
    flow: str = ""
    score: float | None = None
    label: str | None = None
    comment: str | None = None


class ModelCall(Record):
    """One call of a model (the ``model_calls`` relation), written by the
    runs log with the run it was made in (``run_id``; empty outside ops)."""

    __relation__ = "model_calls"

    run_id: str = ""
    component: str = ""
    instance: str = ""
    flow: str = ""
    model: str
    """The model's name as the endpoint knows it."""
    endpoint: str
    """The endpoint's base URL (no credentials)."""
    operation: str = "chat"
    """``chat``, ``completion``, ``embedding`` or ``stream``."""
    status: str = "ok"
    """``ok`` or ``error``."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens the provider served from its own prompt cache."""
    cost: float = 0.0
    """US dollars, from the price table (0 for unknown or local models)."""
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    """Time to the first token of a streamed call."""
    retries: int = 0
    cache_hit: str | None = None
    """``exact`` or ``semantic`` when the response came from Tidal's cache."""
    similarity: float | None = None
    """For a semantic cache hit: the similarity that matched."""
    params: Any = None
    """The sampling settings sent (temperature, top_p, seed, ...)."""
    error: str | None = None
    started_at: datetime | None = None
    parent_call: str | None = None
    """For a tool call's child calls and for sampling candidates: the call
    they belong to."""
    note: Any = None
    """What a helper decided (best-of-n's winner and scores, a tool call's
    arguments and child run), as JSON."""


class GuardViolation(Record):
    """What a serve op's guard found (the ``guard_violations`` relation),
    written by the runs log with the run (``run_id``)."""

    __relation__ = "guard_violations"

    run_id: str = ""
    component: str = ""
    instance: str = ""
    flow: str = ""
    guard: str
    stage: str
    """``input`` (the props) or ``output`` (the result)."""
    action: str
    """``block``, ``redact``, ``retry``, ``fallback``, or ``error`` (the guard raised)."""
    detail: str = ""


class ExperimentPin(Record):
    """A promoted experiment (the ``experiment_pins`` relation; ``id`` is
    the experiment's name, ``Component.param``): every instance gets
    ``variant``."""

    __relation__ = "experiment_pins"

    variant: str
