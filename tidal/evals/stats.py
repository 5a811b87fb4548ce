"""Intervals for means and paired differences (Student's t, from scipy).

The t interval is exact for normal scores and close for bounded ones at
the sizes evals have; it is deterministic, unlike a bootstrap, so a report
read twice says the same."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval (None where n < 2)."""

    n: int
    mean: float | None
    low: float | None
    high: float | None
    std: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "mean": self.mean, "low": self.low, "high": self.high, "std": self.std}


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` and its t interval."""
    data = np.asarray(values, dtype=np.float64)
    n = int(data.size)
    if n == 0:
        return Interval(0, None, None, None, None)
    mean = float(data.mean())
    if n == 1:
        return Interval(1, mean, None, None, None)
    std = float(data.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half, std)


def p_value(differences: Sequence[float]) -> float | None:
    """Two-sided p-value of a paired t test that the mean difference is 0
    (None where it is undefined: fewer than 2 pairs or no spread)."""
    data = np.asarray(differences, dtype=np.float64)
    if data.size < 2:
        return None
    std = float(data.std(ddof=1))
    if std == 0.0:
        return None if float(data.mean()) == 0.0 else 0.0
    t = float(data.mean()) / (std / math.sqrt(data.size))
    return float(2 * stats.t.sf(abs(t), data.size - 1))
