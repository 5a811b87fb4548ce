"""The digits example: the stream's images invert halfway; without a code
change the monitor detects it, refits in shadow, promotes, and accuracy
recovers; ``tidal state rollback`` (admin.rollback) puts the old model back."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("river")

import tidal
from examples import digits_drift as digits
from tidal import admin


def test_the_digits_app_detects_the_shift_and_recovers(tmp_path: Path) -> None:
    data = digits.stream(400)
    app = tidal.App("digits", store=f"sqlite:///{tmp_path}/store.db", home=tmp_path)
    try:
        Digits = digits.classifier(app, data)
        monitor = digits.monitored(Digits)
        right = digits.serve(app, Digits, data, monitor)
        s = data.shift_at
        events = monitor.events(digits.INSTANCE)
        drift = next(e for e in events if e.trigger == "drift")
        assert 0 < drift.labels_seen - s < 60
        assert digits.accuracy(right[:s]) > 0.9 and digits.accuracy(right[s : s + 20]) < 0.3
        assert digits.accuracy(right[-50:]) > 0.75  # recovered within 150 digits
        promoted = [e for e in events if e.outcome == "promoted"]
        assert promoted and all(e.new_score is not None and e.old_score is not None for e in promoted)

        # Rolling the model key back to the first model undoes the promotions.
        history = admin.key_history(app, "Digits", digits.INSTANCE, "model")
        admin.rollback(app, "Digits", digits.INSTANCE, "model", history[-1].version)
        inst = Digits(digits.INSTANCE)
        inverted = data.images[-40:] / 16.0
        first = digits.train(*data.initial).predict(inverted)
        assert (inst.read_state("model").predict(inverted) == first).all()
        assert (
            sum(
                inst.run("predict", {"pixels": [float(p) for p in x]}) == y
                for x, y in zip(data.images[-40:], data.labels[-40:], strict=True)
            )
            < 15
        )  # the old model fails the inverted digits again
    finally:
        app.close()


def test_main_narrates(capsys: pytest.CaptureFixture[str]) -> None:
    figures = digits.main(300)
    out = capsys.readouterr().out
    assert "Accuracy before the shift" in out and "rollback" in out
    assert figures["detected_after"] is not None
