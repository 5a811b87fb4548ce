"""Which enqueues wake the executor's idle threads: not those for an
instance one of its threads holds or lingers over (that thread takes the
new ops itself), so a second thread does not keep failing to claim it."""

from __future__ import annotations

from pathlib import Path

from conftest import make_app

from tidal.engine.executor import Executor
from tidal.stores import Claim


def test_enqueues_for_a_held_or_lingered_instance_wake_nobody(tmp_path: Path) -> None:
    app = make_app("memory", tmp_path)
    try:
        ex = Executor(app, threads=2)  # not started: only its wake-up rule is looked at
        ex._active["t1"] = Claim("C", "busy", "t1", [], 0.0)
        ex._lingering.add(("C", "waiting"))
        for instance in ("busy", "waiting"):
            ex._wake.clear()
            ex.notify("C", instance)
            assert not ex._wake.is_set(), instance
        for component, instance in (("C", "other"), ("D", "busy"), (None, None)):
            ex._wake.clear()
            ex.notify(component, instance)
            assert ex._wake.is_set(), (component, instance)
    finally:
        app.close()


def test_a_lingered_instance_is_released_by_the_next_claim(tmp_path: Path) -> None:
    app = make_app("memory", tmp_path)
    try:
        ex = Executor(app, threads=1)
        ex._lingering.add(("C", "i1"))
        ex._local.lingered = ("C", "i1")
        assert ex.run_once() == 0  # nothing to claim: the mark goes all the same
        assert ex._lingering == set()
        ex._wake.clear()
        ex.notify("C", "i1")
        assert ex._wake.is_set()
    finally:
        app.close()
