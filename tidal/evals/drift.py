"""Online drift detectors over a stream of numbers (a flow's inputs, its
outputs, or its quality: 1/0 correctness as labels arrive).

Each detector is a small picklable object, so a monitor keeps it as
versioned component state: ``update(x)`` says whether the stream has just
moved, ``stats()`` what it saw. ADWIN and Page-Hinkley are river's (a
maintained implementation, used as is); KS windows compare a reference
window with the latest one by scipy's two-sample Kolmogorov-Smirnov test.

Every detector also keeps the mean of the values since it last fired and
of the latest few, so a monitor can tell a drop from a rise (an accuracy
that goes up is not a reason to refit).
"""

from __future__ import annotations

import importlib
from collections import deque
from typing import Any, Literal

Direction = Literal["down", "up", "both"]

RECENT = 30
"""Values in the recent mean that tells which way the stream moved."""


def _river_drift() -> Any:
    try:
        return importlib.import_module("river.drift")
    except ImportError as exc:  # pragma: no cover - river is a dependency of tidal[drift]
        raise ImportError(
            "ADWIN and Page-Hinkley need river: pip install 'tidal[drift]' (or use detector='ks')"
        ) from exc


class Detector:
    """The base of detectors: feed values with :meth:`update`; it returns
    True on the value where the detector decides the stream has changed.
    Subclasses implement :meth:`step`."""

    name = "detector"

    def __init__(self) -> None:
        self.n = 0
        """Values seen since the detector was made."""
        self.drifts = 0
        self._total = 0.0
        self._count = 0
        self._recent: deque[float] = deque(maxlen=RECENT)
        self.last: dict[str, Any] = {}
        """The stats of the last detection."""

    def step(self, x: float) -> bool:
        raise NotImplementedError

    def update(self, x: float) -> bool:
        x = float(x)
        self.n += 1
        before = self._total / self._count if self._count else x
        fired = self.step(x)
        self._recent.append(x)
        self._total += x
        self._count += 1
        if fired:
            self.drifts += 1
            recent = sum(self._recent) / len(self._recent)
            self.last = {"at": self.n, "mean_before": round(before, 6), "mean_recent": round(recent, 6)}
            # The new regime starts now: its mean is the recent one.
            self._total, self._count = sum(self._recent), len(self._recent)
        return fired

    @property
    def mean(self) -> float | None:
        """The mean of the values since the last detection."""
        return self._total / self._count if self._count else None

    def stats(self) -> dict[str, Any]:
        """What the detector knows, as JSON: its name, values seen,
        detections, the current mean and the last detection's stats."""
        return {"detector": self.name, "n": self.n, "drifts": self.drifts, "mean": self.mean, **self.last}


class Adwin(Detector):
    """ADWIN (Bifet and Gavaldà, 2007): an adaptive window cut where two
    sub-windows' means differ by more than chance allows (confidence
    ``delta``). river's implementation, checking for a cut every ``clock``
    values: 4 rather than river's 32, as labels come slowly and each
    value of delay is a wrong answer served."""

    name = "adwin"

    def __init__(self, delta: float = 0.002, clock: int = 4, **options: Any) -> None:
        super().__init__()
        self.delta = delta
        self._adwin = _river_drift().ADWIN(delta=delta, clock=clock, **options)

    def step(self, x: float) -> bool:
        self._adwin.update(x)
        return bool(self._adwin.drift_detected)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "delta": self.delta, "width": float(self._adwin.width)}


class PageHinkley(Detector):
    """Page-Hinkley: a CUSUM of the deviations from the running mean,
    firing past ``threshold``. ``mode`` is river's: ``down`` watches for
    drops (of accuracy), ``up`` for rises, ``both`` for either. The
    threshold is lower than river's default (50), which suits values of
    large range; 20 suits 0/1 correctness."""

    name = "page_hinkley"

    def __init__(
        self, threshold: float = 20.0, delta: float = 0.005, min_instances: int = 30, mode: Direction = "both"
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self._ph = _river_drift().PageHinkley(threshold=threshold, delta=delta, min_instances=min_instances, mode=mode)

    def step(self, x: float) -> bool:
        self._ph.update(x)
        return bool(self._ph.drift_detected)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "threshold": self.threshold}


class KSWindows(Detector):
    """Two windows of ``size`` values: a reference (the first ``size``
    after the last detection) and the latest ``size``; every ``step``
    values they are compared by a two-sample Kolmogorov-Smirnov test, and a
    p-value under ``alpha`` is a drift. Suited to inputs (a feature's
    distribution), where a mean alone misses a change of shape."""

    name = "ks"

    def __init__(self, size: int = 100, alpha: float = 0.001, every: int = 10) -> None:
        super().__init__()
        if size < 10:
            raise ValueError(f"KS windows need at least 10 values each, got size={size}")
        self.size, self.alpha, self.every = size, alpha, every
        self._reference: list[float] = []
        self._latest: deque[float] = deque(maxlen=size)
        self.p_value: float | None = None
        self.statistic: float | None = None

    def step(self, x: float) -> bool:
        if len(self._reference) < self.size:
            self._reference.append(x)
            return False
        self._latest.append(x)
        if len(self._latest) < self.size or self.n % self.every:
            return False
        stats = importlib.import_module("scipy.stats")
        # The asymptotic p-value: the exact one is slow and gives up on many ties (0/1 values).
        result = stats.ks_2samp(self._reference, list(self._latest), method="asymp")
        self.statistic, self.p_value = float(result.statistic), float(result.pvalue)
        if self.p_value >= self.alpha:
            return False
        self._reference = list(self._latest)  # the new regime is the reference now
        self._latest.clear()
        return True

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "size": self.size, "p_value": self.p_value, "statistic": self.statistic}


class At(Detector):
    """Fires exactly at the ``at``-th value (1-based): an oracle that knows
    when the stream shifts, for benchmarks and tests."""

    name = "oracle"

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def step(self, x: float) -> bool:
        return self.n == self.at


DETECTORS: dict[str, type[Detector]] = {"adwin": Adwin, "page_hinkley": PageHinkley, "ks": KSWindows}


def detector(spec: str | Detector, **options: Any) -> Detector:
    """A detector by name (``adwin``, ``page_hinkley``, ``ks``) with its
    options, or the given one as is."""
    if isinstance(spec, Detector):
        return spec
    cls = DETECTORS.get(spec)
    if cls is None:
        raise ValueError(f"unknown detector {spec!r}; known: {sorted(DETECTORS)}")
    return cls(**options)
