"""Motion's module-level helpers: get_instances, inspect_state, clear_instance."""

from __future__ import annotations

from typing import Any

import pytest

import tidal
from tidal import Component


def _counter() -> Component:
    C = Component("HelperCounter")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0, "tags": []}

    @C.update("bump")
    def bump(state: Any, props: Any) -> dict[str, Any]:
        return {"n": state["n"] + 1, "tags": [*state["tags"], props["tag"]]}

    return C


def test_get_instances_inspect_state_and_clear_instance() -> None:
    C = _counter()
    for name in ("a", "b"):
        with C(name) as inst:
            inst.run("bump", props={"tag": name}, flush_update=True)
    assert sorted(tidal.get_instances("HelperCounter")) == ["a", "b"]

    state = tidal.inspect_state("HelperCounter__a")
    assert state == {"n": 1, "tags": ["a"]}
    state["tags"].append("mutated")  # a copy: the stored state is untouched
    assert tidal.inspect_state("HelperCounter__a")["tags"] == ["a"]

    assert tidal.clear_instance("HelperCounter__a") is True
    assert tidal.clear_instance("HelperCounter__a") is False
    assert tidal.get_instances("HelperCounter") == ["b"]
    with pytest.raises(ValueError, match="does not exist"):
        tidal.inspect_state("HelperCounter__a")
    with C("a") as fresh:  # a cleared instance starts again from init_state
        assert fresh.read_state("n") == 0


def test_instance_names_must_have_a_component_part() -> None:
    with pytest.raises(ValueError, match="Component__instanceid"):
        tidal.inspect_state("no-separator")
    with pytest.raises(ValueError, match="Component__instanceid"):
        tidal.clear_instance("__x")
