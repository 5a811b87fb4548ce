"""Drift that triggers a safe refit, on scikit-learn's bundled digits.

A classifier component serves a stream of 8x8 digits; each digit's label
arrives a few predictions later, as a row of the ``Labelled`` relation.
Halfway through, the stream's images come inverted (16 - pixel: a new
scanner, say). Nothing in the app changes: the monitor sees accuracy
collapse (ADWIN over 1/0 correctness), queues the classifier's ``fit``
op, checks the candidate model against the serving one on held-out recent
labels, and promotes it; follow-up refits as labels accumulate finish the
recovery. Every step is a row of ``drift_events``, and ``tidal state
rollback`` can put the old model back.

    python -m examples.digits_drift          # needs scikit-learn (tidal[examples])
"""

from __future__ import annotations

import random
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.svm import SVC

import tidal
from tidal import evals
from tidal.evals.drift import Detector

INSTANCE = "digits"
SEED = 7


class Labelled(tidal.Record):
    """A digit's true label, arriving after the prediction (``run_id``)."""

    run_id: str
    pixels: list[float]
    label: int


@dataclass(frozen=True)
class Stream:
    """Digits for the first model (``initial``) and a stream whose images
    are inverted from ``shift_at`` on."""

    initial: tuple[np.ndarray, np.ndarray]
    images: np.ndarray
    labels: np.ndarray
    shift_at: int


def stream(n: int = 1200, initial: int = 400, seed: int = SEED) -> Stream:
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    x, y = digits.data[order], digits.target[order]
    images, labels = x[initial:][:n].copy(), y[initial:][:n]
    shift_at = len(labels) // 2
    images[shift_at:] = 16.0 - images[shift_at:]
    return Stream((x[:initial], y[:initial]), images, labels, shift_at)


def train(x: Sequence[Sequence[float]] | np.ndarray, y: Sequence[int] | np.ndarray) -> SVC:
    # An RBF kernel, not a linear model: a refit's rows mix both regimes, and
    # no linear model can read a digit and its inverse alike.
    return SVC(gamma="scale").fit(np.asarray(x) / 16.0, np.asarray(y))


def classifier(app: tidal.App, data: Stream) -> tidal.Component:
    Digits = app.component("Digits")

    @Digits.init_state
    def setup() -> dict[str, Any]:
        return {"model": train(*data.initial)}

    @Digits.serve("predict")
    def predict(state: Any, props: Any) -> int:
        return int(state["model"].predict(np.asarray([props["pixels"]]) / 16.0)[0])

    @Digits.update("fit")
    def fit(state: Any, props: Any) -> dict[str, Any]:
        rows: list[Labelled] = props["rows"]
        return {"model": train([r.pixels for r in rows], [r.label for r in rows])}

    return Digits


def monitored(Digits: tidal.Component, detector: str | Detector = "adwin") -> evals.Monitor:
    """The only addition to the app: a monitor on the flow."""
    return evals.monitor(
        Digits,
        "predict",
        watch="accuracy",
        detector=detector,
        refit="fit",
        shadow=evals.holdout(Labelled, last=200, input=lambda r: {"pixels": r.pixels}),
        promote_if="not worse",
        instance=INSTANCE,
    )


def serve(
    app: tidal.App, Digits: tidal.Component, data: Stream, monitor: evals.Monitor | None, delay: int = 10
) -> list[int]:
    """Serve the stream; each label arrives ``delay`` predictions later.
    Returns 1/0 per prediction. Waits for the monitor's work after each
    label so that runs are comparable (a live app would not wait)."""
    inst = Digits(INSTANCE)
    waiting: deque[Labelled] = deque()
    right: list[int] = []
    for image, label in zip(data.images, data.labels, strict=True):
        pixels = [float(p) for p in image]
        right.append(int(inst.run("predict", {"pixels": pixels}) == label))
        waiting.append(Labelled(run_id=inst.last_run_id or "", pixels=pixels, label=int(label)))
        if len(waiting) > delay:
            app.insert(waiting.popleft())
            if monitor is not None:
                monitor.flush(INSTANCE)
    return right


def accuracy(right: Sequence[int]) -> float:
    return sum(right) / len(right) if right else float("nan")


def main(n: int = 1200, store: str | None = None, detector: str | Detector = "adwin") -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="tidal-digits-"))
    data = stream(n)
    app = tidal.App("digits", store=store or f"sqlite:///{home}/store.db", home=home)
    try:
        Digits = classifier(app, data)
        monitor = monitored(Digits, detector)
        print(f"Serving {len(data.labels)} digits; from digit {data.shift_at} on, the images come inverted.")
        right = serve(app, Digits, data, monitor)
        s = data.shift_at
        events = monitor.events(INSTANCE)
        for e in events:
            scores = f"shadow {e.old_score:.2f} -> {e.new_score:.2f}" if e.new_score is not None else e.error
            print(
                f"  label {e.labels_seen:4d}: {e.trigger:8s} {e.outcome:8s} ({scores}; replaces v{e.serving_version})"
            )
        detected = next((e.labels_seen for e in events if e.trigger == "drift"), None)
        figures = {
            "before_shift": accuracy(right[:s]),
            "first_100_after": accuracy(right[s : s + 100]),
            "after_200": accuracy(right[s + 200 :]),
            "detected_after": None if detected is None else detected - s,
            "promotions": sum(e.outcome == "promoted" for e in events),
        }
        print(f"Accuracy before the shift: {figures['before_shift']:.1%}")
        print(f"Just after it (100 digits): {figures['first_100_after']:.1%}")
        print(f"Detected {figures['detected_after']} labels after the shift; {figures['promotions']} refits promoted.")
        print(f"From 200 digits after the shift on: {figures['after_200']:.1%}")
        print(
            f"Undo a promotion: tidal state history Digits {INSTANCE} model, "
            f"then tidal state rollback Digits {INSTANCE} model VERSION"
        )
        return figures
    finally:
        app.close()


if __name__ == "__main__":
    random.seed(SEED)
    main()
