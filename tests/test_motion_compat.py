"""A Motion app, written the way Motion's documentation writes it, runs on
Tidal by changing only its import. No App is created: instances use the
default app, configured by TIDAL_HOME (a temporary folder, see conftest)
and TIDAL_STORE."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tidal
from tidal import Component, DiscardPolicy

# -- the app, as in Motion's docs (module level, no App) ----------------------------

AdderComponent = Component("MyAdder")


@AdderComponent.init_state
def setUp():  # type: ignore[no-untyped-def]
    return {"value": 0}


@AdderComponent.serve("add")
def plus(state, props):  # type: ignore[no-untyped-def]
    return state["value"] + props["value"]


@AdderComponent.update("add")
def add(state, props):  # type: ignore[no-untyped-def]
    return {"value": props.serve_result}


Calculator = Component("MyCalculator")


@Calculator.init_state
def calculator_setup(starting_val=0):  # type: ignore[no-untyped-def]
    return {"value": starting_val}


@Calculator.serve("add")
def calc_plus(state, props):  # type: ignore[no-untyped-def]
    return state["value"] + props["value"]


@Calculator.serve("subtract")
def calc_minus(state, props):  # type: ignore[no-untyped-def]
    return state["value"] - props["value"]


@Calculator.update(["add", "subtract"])
def calc_store(state, props):  # type: ignore[no-untyped-def]
    return {"value": props.serve_result}


ZScore = Component("ZScore", params={"window": 5})


@ZScore.init_state
def zscore_setup():  # type: ignore[no-untyped-def]
    return {"mean": None, "std": None, "values": []}


@ZScore.serve("number")
def zscore(state, props):  # type: ignore[no-untyped-def]
    if state["mean"] is None or not state["std"]:
        return None
    return abs(props["value"] - state["mean"]) / state["std"]


@ZScore.update("number")
def zscore_update(state, props):  # type: ignore[no-untyped-def]
    values = state["values"]  # mutated in place, then returned, as Motion apps do
    values.append(props["value"])
    values = values[-ZScore.params["window"] :]
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return {"mean": mean, "std": std, "values": values}


@ZScore.update("reset", discard_policy=DiscardPolicy.NUM_NEW_UPDATES, discard_after=1)
def zscore_reset(state, props):  # type: ignore[no-untyped-def]
    return {"mean": None, "std": None, "values": []}


# -- using it ---------------------------------------------------------------------------------


def test_adder_from_the_docs(tmp_path: Path) -> None:
    c = AdderComponent()
    assert c.run("add", props={"value": 1}, flush_update=True) == 1
    assert c.run("add", props={"value": 2}) == 3
    c.flush_update("add")
    assert c.read_state("value") == 3
    c.shutdown()
    # The default app keeps its state in a SQLite file in TIDAL_HOME.
    assert (tmp_path / "home" / "default.db").exists()
    assert AdderComponent.app is tidal.default_app()


def test_calculator_with_two_flows() -> None:
    with Calculator(init_state_params={"starting_val": 3}) as c:
        assert c.run("add", props={"value": 1}, flush_update=True) == 4
        assert c.run("subtract", props={"value": 2}, flush_update=True) == 2
        assert c.read_state("value") == 2
        assert c.instance_name == f"MyCalculator__{c.instance_id}"


def test_named_instance_reopens(tmp_path: Path) -> None:
    with Calculator("shared", init_state_params={"starting_val": 10}) as c:
        c.run("add", props={"value": 5}, flush_update=True)
    with Calculator("shared", init_state_params={"starting_val": 0}) as again:
        assert again.read_state("value") == 15
        assert again.get_version() == 2


def test_zscore_monitor() -> None:
    with ZScore("sensor") as z:
        assert z.run("number", props={"value": 10}, flush_update=True) is None
        for v in (12, 14, 10, 12):
            z.run("number", props={"value": v}, flush_update=True)
        assert z.read_state("values") == [10, 12, 14, 10, 12]
        assert z.read_state("mean") == pytest.approx(11.6)
        std = z.read_state("std")
        assert z.run("number", props={"value": 30}, flush_update=True) == pytest.approx((30 - 11.6) / std)
        assert z.read_state("values") == [12, 14, 10, 12, 30]
        z.run("reset", flush_update=True)
        assert z.read_state("values") == []


def test_components_follow_a_replaced_default_app(tmp_path: Path) -> None:
    """A module-level component keeps working after the default app it used
    was closed (e.g. at the end of a test): it moves to the new default."""
    with AdderComponent("a") as c:
        c.run("add", props={"value": 1}, flush_update=True)
    first = AdderComponent.app
    first.close()
    with AdderComponent("a") as c:
        assert c.read_state("value") == 1
        assert c.run("add", props={"value": 1}, flush_update=True) == 2
    assert AdderComponent.app is not first
    assert AdderComponent.app is tidal.default_app()


def test_default_app_honours_tidal_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDAL_STORE", "memory://")
    with Calculator("m", init_state_params={"starting_val": 1}) as c:
        assert c.run("add", props={"value": 1}, flush_update=True) == 2
        assert c.read_state("value") == 2
    assert Calculator.app.store.url == "memory://"
    assert not (tmp_path / "home" / "default.db").exists()


def test_default_app_honours_tidal_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("TIDAL_HOME", str(home))
    with AdderComponent("h") as c:
        c.run("add", props={"value": 4}, flush_update=True)
    assert (home / "default.db").exists()
    assert (home / "secret.key").exists()


SCRIPT = """
from tidal import Component

AdderComponent = Component("MyAdder")


@AdderComponent.init_state
def setUp():
    return {"value": 0}


@AdderComponent.serve("add")
def plus(state, props):
    return state["value"] + props["value"]


@AdderComponent.update("add")
def add(state, props):
    return {"value": props.serve_result}


c = AdderComponent("script", flush_on_exit=True)
print(c.run("add", props={"value": 1}, flush_update=True))
c.run("add", props={"value": 2})
c.shutdown()
"""


def test_a_motion_script_runs_unchanged_and_persists(tmp_path: Path) -> None:
    """The whole script, top-level code and all, in a fresh interpreter:
    flush_on_exit applies the update queued without a flush before the
    process exits, and state persists between runs."""
    script = tmp_path / "adder.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDAL_")}
    env["TIDAL_HOME"] = str(tmp_path / "script-home")
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split())
    # run 1: 0 + 1 = 1, then value becomes 1 + 2 = 3; run 2 starts from 3.
    assert outputs == [["1"], ["4"]]
