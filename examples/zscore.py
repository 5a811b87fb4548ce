"""Z-score anomaly detector: the first example of Motion's docs, on Tidal.

The serve op scores a value against the running mean and standard deviation
in state; the update op folds the value into those statistics in the
background. Only the import differs from the Motion version.

    python examples/zscore.py
"""

from __future__ import annotations

import math
from typing import Any

from tidal import Component

ZScore = Component("ZScore")


@ZScore.init_state
def setup() -> dict[str, Any]:
    # Welford's running statistics: O(1) state however many values arrive.
    return {"count": 0, "mean": 0.0, "m2": 0.0}


@ZScore.serve("number")
def score(state: Any, props: Any) -> float | None:
    if state["count"] < 10:  # too few values for a meaningful deviation
        return None
    std = math.sqrt(state["m2"] / (state["count"] - 1))
    return abs(props["value"] - state["mean"]) / std if std else 0.0


@ZScore.update("number")
def fold(state: Any, props: Any) -> dict[str, Any]:
    count = state["count"] + 1
    delta = props["value"] - state["mean"]
    mean = state["mean"] + delta / count
    return {"count": count, "mean": mean, "m2": state["m2"] + delta * (props["value"] - mean)}


def main() -> None:
    import random

    rng = random.Random(7)
    with ZScore("sensor-1") as detector:
        for i in range(1, 501):
            value = rng.gauss(20.0, 2.0) if i % 100 else 45.0  # a spike every 100 values
            z = detector.run("number", props={"value": value})
            if z is not None and z > 4:
                print(f"value #{i}: {value:.1f} is an anomaly (z = {z:.1f})")
        detector.flush_update("number")
        print(
            f"after {detector.read_state('count')} values: mean {detector.read_state('mean'):.2f}, "
            f"version {detector.get_version()}"
        )


if __name__ == "__main__":
    main()
