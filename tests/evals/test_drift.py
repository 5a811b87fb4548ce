"""Monitors: a detector kept as component state, fed by a label relation;
on drift a refit computes a candidate that is promoted only when its shadow
score on held-out labelled rows is not worse; rejected, failed and rolled
back refits leave the serving state as it should be."""

from __future__ import annotations

import random
from typing import Any

import pytest

import tidal
from tidal import admin, evals
from tidal.evals import drift
from tidal.evals.drift import At


class Label(tidal.Record):
    run_id: str
    x: int
    label: int


def classifier(app: tidal.App) -> tidal.Component:
    """Predicts the parity of x, or its opposite once refit on flipped labels."""
    Clf = app.component("Clf")

    @Clf.init_state
    def setup() -> dict[str, Any]:
        return {"model": {"flip": False}}

    @Clf.serve("predict")
    def predict(state: Any, props: Any) -> int:
        return (props["x"] % 2) ^ int(state["model"]["flip"])

    @Clf.update("fit")
    def fit(state: Any, props: Any) -> dict[str, Any]:
        recent = props["rows"][-50:]
        agree = sum((r.x % 2) == r.label for r in recent)
        return {"model": {"flip": agree < len(recent) / 2}}

    return Clf


def watch(Clf: tidal.Component, **options: Any) -> evals.Monitor:
    shadow = evals.holdout(Label, last=60, fraction=0.5, input=lambda r: {"x": r.x})
    return evals.monitor(Clf, "predict", refit=options.pop("refit", "fit"), shadow=shadow, instance="clf", **options)


def stream(app: tidal.App, Clf: tidal.Component, mon: evals.Monitor, n: int, flip_at: int | None) -> list[int]:
    """``n`` predictions, each labelled at once (1 for right); the labels
    flip from the ``flip_at``-th on; 5% label noise."""
    rng = random.Random(7)
    inst = Clf("clf")
    right = []
    for i in range(n):
        x = rng.randrange(100)
        pred = inst.run("predict", {"x": x})
        truth = (x % 2) ^ int(flip_at is not None and i >= flip_at)
        if rng.random() < 0.05:
            truth = 1 - truth
        right.append(int(pred == truth))
        app.insert(Label(run_id=inst.last_run_id or "", x=x, label=truth))
        if i % 25 == 0:
            mon.flush("clf")
    mon.flush("clf")
    return right


def test_detectors_find_a_shift_and_keep_their_state_through_pickling() -> None:
    import pickle

    rng = random.Random(1)
    values = [float(rng.random() < 0.95) for _ in range(400)] + [float(rng.random() < 0.3) for _ in range(200)]
    for det in (evals.Adwin(), evals.PageHinkley(mode="down"), evals.KSWindows(size=60)):
        fired = []
        for i, v in enumerate(values):
            if det.update(v):
                fired.append(i)
            if i == 300:
                det = pickle.loads(pickle.dumps(det))  # as the monitor's state is stored
        assert fired and 400 <= fired[0] < 480, (det.name, fired)
        assert det.last["mean_recent"] < det.last["mean_before"]
    with pytest.raises(ValueError, match="known"):
        drift.detector("cusum")


def test_drift_is_detected_and_a_refit_recovers(app: tidal.App) -> None:
    Clf = classifier(app)
    mon = watch(Clf, detector="adwin")
    right = stream(app, Clf, mon, 500, flip_at=250)
    events = mon.events("clf")
    first = events[0]
    assert first.trigger == "drift" and first.outcome in ("promoted", "rejected")
    assert 250 < first.labels_seen < 250 + 60, first.labels_seen
    assert first.detector["detector"] == "adwin" and first.detector["mean_recent"] < first.detector["mean_before"]
    # The first candidate may lose on a window still mostly of the old
    # regime; a follow-up refit as labels accumulate wins.
    promoted = next(e for e in events if e.outcome == "promoted")
    assert promoted.new_score is not None and promoted.old_score is not None
    assert promoted.new_score >= promoted.old_score and promoted.labels_seen < 250 + 200
    assert promoted.shadow_n > 0 and promoted.serving_version is not None and promoted.keys == ["model"]
    assert Clf("clf").read_state("model") == {"flip": True}
    assert sum(right[400:]) / 100 > 0.85  # recovered
    assert {e.trigger for e in events[1:]} <= {"followup"}
    assert next(iter(app.sql("select count(*) as n from drift_events")))["n"] == len(events)


def test_a_stable_stream_raises_no_alarm(app: tidal.App) -> None:
    Clf = classifier(app)
    mon = watch(Clf, detector="adwin")
    stream(app, Clf, mon, 600, flip_at=None)
    assert mon.events() == []
    assert mon.instance("clf").read_state("n") == 600


def test_shadow_rejects_a_worse_candidate(app: tidal.App) -> None:
    Clf = classifier(app)

    def worse(state: Any, props: Any) -> dict[str, Any]:
        return {"model": {"flip": not state["model"]["flip"]}}

    mon = watch(Clf, refit=worse, detector=At(100), direction="both", retrain_for=0)
    before = Clf("clf").get_version()
    stream(app, Clf, mon, 150, flip_at=None)
    (event,) = mon.events()
    assert event.outcome == "rejected" and event.new_score is not None and event.old_score is not None
    assert event.new_score < event.old_score
    assert Clf("clf").read_state("model") == {"flip": False} and Clf("clf").get_version() == before
    assert mon.candidate("clf") == {"model": {"flip": True}}  # kept aside


def test_a_refit_that_raises_leaves_the_state_untouched(app: tidal.App) -> None:
    Clf = classifier(app)

    def broken(state: Any, props: Any) -> dict[str, Any]:
        raise RuntimeError("the training data is corrupt")

    mon = watch(Clf, refit=broken, detector=At(100), direction="both", retrain_for=0)
    before = Clf("clf").get_version()
    stream(app, Clf, mon, 150, flip_at=None)
    (event,) = mon.events()
    assert event.outcome == "failed" and "corrupt" in (event.error or "")
    assert Clf("clf").read_state("model") == {"flip": False} and Clf("clf").get_version() == before


def test_a_promotion_is_undone_by_rolling_the_key_back(app: tidal.App) -> None:
    Clf = classifier(app)
    mon = watch(Clf, detector=At(360), direction="both", retrain_for=0)
    stream(app, Clf, mon, 370, flip_at=250)
    (event,) = mon.events()
    assert event.outcome == "promoted" and Clf("clf").read_state("model") == {"flip": True}
    history = admin.key_history(app, "Clf", "clf", "model")
    old = next(h for h in history if h.version <= (event.serving_version or 0))
    admin.rollback(app, "Clf", "clf", "model", old.version)  # what `tidal state rollback` runs
    assert Clf("clf").read_state("model") == {"flip": False}
    assert Clf("clf").run("predict", {"x": 3}) == 1


def test_monitor_checks_its_arguments(app: tidal.App) -> None:
    Clf = classifier(app)
    shadow = evals.holdout(Label)
    with pytest.raises(ValueError, match="no serve op"):
        evals.monitor(Clf, "nope", refit="fit", shadow=shadow)
    with pytest.raises(ValueError, match="refit flow"):
        evals.monitor(Clf, "predict", refit="train", shadow=shadow)
    with pytest.raises(ValueError, match="fraction"):
        evals.holdout(Label, fraction=1.0)
