"""StateMigrator: rewriting the state of many instances."""

from __future__ import annotations

from typing import Any

import pytest

import tidal
from tidal import MigrationResult, StateMigrator


def profile_component(app: tidal.App) -> tidal.Component:
    C = app.component("Profile")

    @C.init_state
    def setup(name: str = "") -> dict[str, Any]:
        return {"name": name, "old_field": 1, "visits": 0}

    @C.serve("show")
    def show(state: Any, props: Any) -> dict[str, Any]:
        return dict(state)

    @C.update("visit")
    def visit(state: Any, props: Any) -> dict[str, int]:
        return {"visits": state["visits"] + 1}

    return C


def add_tags(state: dict[str, Any]) -> dict[str, Any]:
    new = {k: v for k, v in state.items() if k != "old_field"}
    new["tags"] = [state["name"].upper()]
    return new


def make_instances(C: tidal.Component, names: list[str]) -> None:
    for name in names:
        with C(name, init_state_params={"name": name}) as inst:
            inst.run("show")  # warm the snapshot and the result cache


def test_migrates_every_instance(app: tidal.App) -> None:
    C = profile_component(app)
    make_instances(C, ["ann", "bob", "cy"])
    results = StateMigrator(C, add_tags).migrate()
    assert sorted(r.instance_id for r in results) == ["ann", "bob", "cy"]
    assert all(r.exception is None for r in results)
    for name in ("ann", "bob", "cy"):
        with C(name) as inst:
            assert inst.run("show") == {"name": name, "visits": 0, "tags": [name.upper()]}
            assert inst.get_version() == 2


def test_migrates_only_the_given_ids(app: tidal.App) -> None:
    C = profile_component(app)
    make_instances(C, ["ann", "bob", "cy"])
    results = StateMigrator(C, add_tags).migrate(["bob", "cy"], num_workers=1)
    assert [r.instance_id for r in results] == ["bob", "cy"]
    with C("ann") as ann, C("bob") as bob:
        assert ann.read_state("tags") is None
        assert ann.read_state("old_field") == 1
        assert bob.read_state("tags") == ["BOB"]


def test_dropped_keys_are_removed(app: tidal.App) -> None:
    C = profile_component(app)
    make_instances(C, ["ann"])
    StateMigrator(C, add_tags).migrate()
    with C("ann") as ann:
        assert ann.read_state("old_field", default_value="gone") == "gone"
        assert "old_field" not in ann.run("show")
    full = app.store.read_state("Profile", "ann")
    assert full is not None
    assert sorted(full.changed) == ["name", "tags", "visits"]


def test_updates_keep_working_after_migration(app: tidal.App) -> None:
    C = profile_component(app)
    make_instances(C, ["ann"])
    with C("ann") as ann:
        ann.run("visit", flush_update=True)
        StateMigrator(C, add_tags).migrate()
        ann.run("visit", flush_update=True)
        assert ann.run("show") == {"name": "ann", "visits": 2, "tags": ["ANN"]}


def test_a_failing_instance_is_reported_and_the_others_migrate(app: tidal.App) -> None:
    C = profile_component(app)
    make_instances(C, ["ann", "bad", "cy"])

    def migrate(state: dict[str, Any]) -> dict[str, Any]:
        if state["name"] == "bad":
            raise ValueError("cannot migrate bad")
        return add_tags(state)

    results = {r.instance_id: r for r in StateMigrator(C, migrate).migrate()}
    assert isinstance(results["bad"], MigrationResult)
    assert isinstance(results["bad"].exception, ValueError)
    assert "cannot migrate bad" in str(results["bad"].exception)
    assert results["ann"].exception is None
    assert results["cy"].exception is None
    with C("bad") as bad, C("cy") as cy:
        assert bad.read_state("old_field") == 1  # untouched
        assert bad.get_version() == 1
        assert cy.read_state("tags") == ["CY"]


def test_migrate_fn_must_return_a_dict(app: tidal.App) -> None:
    C = profile_component(app)
    make_instances(C, ["ann"])
    (result,) = StateMigrator(C, lambda state: [state]).migrate()
    assert isinstance(result.exception, tidal.InitStateError)
    with C("ann") as ann:
        assert ann.get_version() == 1


def test_unknown_instance_id_is_a_failed_result(app: tidal.App) -> None:
    C = profile_component(app)
    (result,) = StateMigrator(C, add_tags).migrate(["nobody"])
    assert result.instance_id == "nobody"
    assert isinstance(result.exception, tidal.StoreError)


def test_migrate_with_no_instances_returns_nothing(app: tidal.App) -> None:
    C = profile_component(app)
    assert StateMigrator(C, add_tags).migrate() == []


def _two(a: Any, b: Any) -> dict[str, Any]:
    return {}


def _none() -> dict[str, Any]:
    return {}


@pytest.mark.parametrize("fn", [_two, _none])
def test_migrate_fn_with_the_wrong_arity_is_rejected(fn: Any) -> None:
    C = tidal.Component("Arity")
    with pytest.raises(tidal.DefinitionError, match="exactly one argument"):
        StateMigrator(C, fn)


def test_component_argument_is_checked() -> None:
    with pytest.raises(TypeError, match="Component"):
        StateMigrator("Profile", add_tags)  # type: ignore[arg-type]
