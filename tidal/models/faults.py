"""Faults a served model can be told to inject, so tests see what a hosted
API does on a bad day: rate limits, server errors, slowness, cut connections.

A fault in JSON (``POST /_stand-in/faults`` takes a list, ``--fault`` one)::

    {"kind": "429", "times": 2, "retry_after": 1}   # 429 with Retry-After: 1, for the next 2 requests
    {"kind": "500", "model": "gpt-4o-mini"}         # every request for that model fails with 500
    {"kind": "slow", "delay": 2.5, "times": 1}      # wait 2.5 s before answering, and between stream chunks
    {"kind": "drop", "after_tokens": 3}             # a stream stops after 3 chunks, without [DONE]

``times`` is how many requests the fault hits before it is used up (left
out: every request); ``model`` limits it to requests for that model. A
request takes the first fault that applies and is not used up, and counts a
hit on it (``hits``). Faults hit the model endpoints (chat, completions,
embeddings), never ``/v1/models`` or the control routes.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

FAULT_KINDS = ("429", "500", "slow", "drop")
FAULT_KEYS = frozenset({"kind", "times", "model", "retry_after", "delay", "after_tokens"})

DEFAULT_DELAY = 1.0
"""Seconds a ``slow`` fault waits when it sets no ``delay``."""


class FaultError(ValueError):
    """Raised when a fault's JSON is malformed; the message says what to fix."""


@dataclass
class Fault:
    """One fault (see the module docstring); ``hits`` counts the requests it hit."""

    kind: str
    times: int | None = None
    model: str | None = None
    retry_after: float | None = None
    delay: float = DEFAULT_DELAY
    after_tokens: int = 0
    hits: int = 0

    @classmethod
    def parse(cls, data: Any) -> Fault:
        """A fault from its JSON form; :class:`FaultError` if malformed."""
        if not isinstance(data, dict):
            raise FaultError(f"a fault is a JSON object, got {data!r}")
        unknown = set(data) - FAULT_KEYS
        if unknown:
            raise FaultError(f"unknown fault keys {sorted(unknown)}; a fault has {sorted(FAULT_KEYS)}")
        kind = str(data.get("kind"))
        if kind not in FAULT_KINDS:
            raise FaultError(f"a fault's 'kind' is one of {list(FAULT_KINDS)}, got {data.get('kind')!r}")
        fault = cls(kind, model=data.get("model"))
        fault.times = _number(data, "times", int, minimum=0)
        fault.retry_after = _number(data, "retry_after", float, minimum=0)
        fault.delay = _number(data, "delay", float, minimum=0, default=DEFAULT_DELAY)
        fault.after_tokens = _number(data, "after_tokens", int, minimum=0, default=0)
        if fault.model is not None and not isinstance(fault.model, str):
            raise FaultError(f"a fault's 'model' is a model name, got {fault.model!r}")
        return fault

    @property
    def used_up(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def applies_to(self, model: Any) -> bool:
        return not self.used_up and (self.model is None or self.model == model)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "used_up": self.used_up}


def _number(data: dict[str, Any], key: str, kind: Any, *, minimum: float, default: Any = None) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise FaultError(f"a fault's {key!r} is a number >= {minimum}, got {value!r}")
    if kind is int and value != int(value):
        raise FaultError(f"a fault's {key!r} is a whole number, got {value!r}")
    return kind(value)


class Faults:
    """The faults a server injects; safe to change while it serves."""

    def __init__(self, faults: list[Fault] | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults or [])

    def replace(self, faults: list[Fault]) -> None:
        with self._lock:
            self._faults = list(faults)

    def clear(self) -> None:
        self.replace([])

    def take(self, model: Any) -> Fault | None:
        """The first fault that applies to a request for ``model``, with a hit counted."""
        with self._lock:
            for fault in self._faults:
                if fault.applies_to(model):
                    fault.hits += 1
                    return fault
        return None

    def as_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_dict() for f in self._faults]


def parse_faults(data: Any) -> list[Fault]:
    """Faults from a JSON list of faults (a single object counts as a list of one)."""
    return [Fault.parse(f) for f in (data if isinstance(data, list) else [data])]
