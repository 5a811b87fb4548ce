"""Defining components: names, params, cache settings, flow keys and the
errors a wrong definition gets at decoration time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import tidal
from tidal import Component, DefinitionError, DiscardPolicy


def _state_props_op(state: Any, props: Any) -> Any:
    return None


# -- names, params, cache settings ----------------------------------------


@pytest.mark.parametrize("name", ["", "a/b", None, 3])
def test_component_name_is_validated(name: Any) -> None:
    with pytest.raises(DefinitionError, match="name"):
        Component(name)


def test_definition_error_is_a_value_error() -> None:
    # Motion raised ValueError for bad definitions; code catching it keeps working.
    with pytest.raises(ValueError):
        Component("")


@pytest.mark.parametrize("ttl", [-1, -0.5, None])
def test_cache_ttl_must_be_zero_or_positive(ttl: Any) -> None:
    with pytest.raises(DefinitionError, match=r"Bad.*cache_ttl"):
        Component("Bad", cache_ttl=ttl)


def test_cache_ttl_zero_and_positive_are_accepted() -> None:
    assert Component("Off", cache_ttl=0).cache_ttl == 0
    assert Component("On", cache_ttl=0.2).cache_ttl == 0.2


def test_cache_mode_is_validated() -> None:
    with pytest.raises(DefinitionError, match="cache_mode"):
        Component("Bad", cache_mode="forever")  # type: ignore[arg-type]
    C = Component("C")
    with pytest.raises(DefinitionError, match="cache must be one of"):
        C.serve("k", cache="sometimes")  # type: ignore[arg-type]


def test_name_and_params(app: tidal.App) -> None:
    params = {"multiplier": 3}
    C = app.component("Scaler", params=params)
    params["multiplier"] = 100  # the component keeps its own copy
    assert C.name == "Scaler"
    assert C.params == {"multiplier": 3}

    @C.serve("scale")
    def scale(state: Any, props: Any) -> int:
        return int(props["x"] * C.params["multiplier"])

    with C("s") as s:
        assert s.run("scale", props={"x": 7}) == 21


def test_params_default_to_empty_dict() -> None:
    assert Component("NoParams").params == {}


# -- flow keys --------------------------------------------------------------


def test_flow_keys_lists_serve_and_update_keys() -> None:
    C = Component("Flows")
    assert C.flow_keys() == []

    C.serve("b")(_state_props_op)
    C.update(["a", "b"])(_state_props_op)
    C.update("c")(_state_props_op)
    assert C.flow_keys() == ["a", "b", "c"]


def test_list_of_keys_registers_one_op_for_each(app: tidal.App) -> None:
    C = app.component("Multi")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"log": []}

    @C.serve(["add", "sub"])
    def echo(state: Any, props: Any) -> int:
        return int(props["v"])

    @C.update(["add", "sub"])
    def record(state: Any, props: Any) -> dict[str, Any]:
        return {"log": [*state["log"], props.serve_result]}

    assert C.serve_routes["add"].fn is echo
    assert C.serve_routes["sub"].fn is echo
    with C("m") as m:
        assert m.run("add", props={"v": 1}) == 1
        assert m.run("sub", props={"v": 2}) == 2
        m.flush_update()
        assert m.read_state("log") == [1, 2]


@pytest.mark.parametrize("keys", [[], [""], ["ok", ""], [1], ""])
def test_bad_flow_keys_are_rejected(keys: Any) -> None:
    C = Component("Keys")
    with pytest.raises(DefinitionError, match="flow key"):
        C.serve(keys)
    with pytest.raises(DefinitionError, match="flow key"):
        C.update(keys)


# -- serve ops ----------------------------------------------------------------


def test_second_serve_op_for_a_flow_is_rejected() -> None:
    C = Component("Twice")

    @C.serve("predict")
    def first(state: Any, props: Any) -> int:
        return 1

    with pytest.raises(DefinitionError) as info:

        @C.serve("predict")
        def second(state: Any, props: Any) -> int:
            return 2

    message = str(info.value)
    assert "Twice" in message
    assert "'predict'" in message
    assert C.serve_routes["predict"].fn is first


def test_rejected_serve_list_registers_none_of_its_keys() -> None:
    C = Component("Partial")
    C.serve("b")(_state_props_op)

    def other(state: Any, props: Any) -> None:
        return None

    with pytest.raises(DefinitionError, match="'b'"):
        C.serve(["a", "b"])(other)
    assert "a" not in C.serve_routes


def test_several_update_ops_per_flow_are_allowed() -> None:
    C = Component("ManyUpdates")

    def one(state: Any, props: Any) -> None:
        return None

    def two(state: Any, props: Any) -> None:
        return None

    C.update("k")(one)
    C.update("k")(two)
    assert [r.fn for r in C.update_routes["k"]] == [one, two]


def _one_arg(state: Any) -> None:
    return None


def _three_args(state: Any, props: Any, extra: Any) -> None:
    return None


def _no_args() -> None:
    return None


@pytest.mark.parametrize("fn", [_one_arg, _three_args, _no_args])
@pytest.mark.parametrize("decorator", ["serve", "update"])
def test_ops_must_take_state_and_props(decorator: str, fn: Any) -> None:
    C = Component("Sig")
    with pytest.raises(DefinitionError, match=r"two arguments \(state, props\)"):
        getattr(C, decorator)("k")(fn)
    assert C.flow_keys() == []


def test_signatures_with_defaults_or_varargs_are_accepted() -> None:
    C = Component("Sig")

    def with_default(state: Any, props: Any, extra: int = 1) -> None:
        return None

    def varargs(*args: Any) -> None:
        return None

    C.serve("a")(with_default)
    C.serve("b")(varargs)
    C.update("c")(lambda state, props: None)
    assert C.flow_keys() == ["a", "b", "c"]


def test_update_op_must_be_a_function_not_a_generator() -> None:
    """Plain and async update ops are accepted (Motion runs both); generators
    are refused at definition."""
    C = Component("NotPlain")

    def gen(state: Any, props: Any) -> Iterator[dict[str, Any]]:
        yield {}

    async def coro(state: Any, props: Any) -> dict[str, Any]:
        return {}

    async def agen(state: Any, props: Any) -> AsyncIterator[dict[str, Any]]:
        yield {}

    for fn in (gen, agen):
        with pytest.raises(DefinitionError, match=f"{fn.__name__!r} must be a function .* not a generator"):
            C.update("k")(fn)
    assert C.update_routes == {}
    C.update("k")(coro)
    assert [r.fn for r in C.update_routes["k"]] == [coro]


def test_serve_accepts_every_kind_and_records_it() -> None:
    C = Component("Kinds")

    def plain(state: Any, props: Any) -> int:
        return 1

    async def coro(state: Any, props: Any) -> int:
        return 1

    def gen(state: Any, props: Any) -> Iterator[int]:
        yield 1

    async def agen(state: Any, props: Any) -> AsyncIterator[int]:
        yield 1

    for fn in (plain, coro, gen, agen):
        C.serve(fn.__name__)(fn)
    assert {k: r.kind for k, r in C.serve_routes.items()} == {
        "plain": "sync",
        "coro": "async",
        "gen": "gen",
        "agen": "agen",
    }


def test_decorators_return_the_function_unchanged() -> None:
    C = Component("Same")

    def setup() -> dict[str, Any]:
        return {}

    def op(state: Any, props: Any) -> None:
        return None

    assert C.init_state(setup) is setup
    assert C.serve("a")(op) is op
    assert C.update("a")(op) is op


# -- discard policies -------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "after", "match"),
    [
        (DiscardPolicy.NONE, 5, "must be None"),
        (DiscardPolicy.NUM_NEW_UPDATES, None, "discard_after"),
        (DiscardPolicy.NUM_NEW_UPDATES, 0, "discard_after"),
        (DiscardPolicy.SECONDS, -1.0, "discard_after"),
        (DiscardPolicy.SECONDS, None, "discard_after"),
        ("seconds", 1.0, "DiscardPolicy"),
        (2, 1.0, "DiscardPolicy"),
    ],
)
def test_bad_discard_policy_arguments(policy: Any, after: Any, match: str) -> None:
    C = Component("Dropper")
    with pytest.raises(DefinitionError, match=match) as info:
        C.update("k", discard_policy=policy, discard_after=after)
    assert "Component Dropper.update" in str(info.value)


def test_valid_discard_policies_are_kept() -> None:
    C = Component("Policy")
    C.update("a", discard_policy=DiscardPolicy.NUM_NEW_UPDATES, discard_after=3)(_state_props_op)
    C.update("b", discard_policy=DiscardPolicy.SECONDS, discard_after=0.5)(_state_props_op)
    (a,) = C.update_routes["a"]
    (b,) = C.update_routes["b"]
    assert (a.discard_policy, a.discard_after) == (DiscardPolicy.NUM_NEW_UPDATES, 3)
    assert (b.discard_policy, b.discard_after) == (DiscardPolicy.SECONDS, 0.5)


# -- init_state ----------------------------------------------------------------------


def test_init_state_must_return_a_dict(app: tidal.App) -> None:
    C = app.component("BadInit")

    @C.init_state
    def setup() -> Any:
        return [1, 2]

    with pytest.raises(tidal.InitStateError, match=r"BadInit.*dict.*list"):
        C("x")
    assert app.store.get_version("BadInit", "x") is None


def test_component_without_init_state_starts_empty(app: tidal.App) -> None:
    C = app.component("Empty")

    @C.serve("keys")
    def keys(state: Any, props: Any) -> list[str]:
        return sorted(state)

    @C.update("set")
    def set_(state: Any, props: Any) -> dict[str, Any]:
        return {"k": props["v"]}

    with C("e") as e:
        assert e.run("keys") == []
        e.run("set", props={"v": 1}, flush_update=True)
        assert e.run("keys") == ["k"]


# -- ops defined anywhere ------------------------------------------------------------------


def _build_component(app: tidal.App, step: int) -> Component:
    """Ops defined in a function body (closures), not at module scope."""
    C = app.component(f"Inner{step}")

    @C.init_state
    def setup(start: int = 0) -> dict[str, int]:
        return {"n": start}

    @C.serve("bump")
    def peek(state: Any, props: Any) -> int:
        return int(state["n"]) + step

    @C.update("bump")
    def bump(state: Any, props: Any) -> dict[str, int]:
        return {"n": state["n"] + step}

    return C


def test_ops_defined_inside_functions_work(app: tidal.App) -> None:
    by_two = _build_component(app, 2)
    by_five = _build_component(app, 5)
    with by_two("a", init_state_params={"start": 1}) as a, by_five("b") as b:
        assert a.run("bump", flush_update=True) == 3
        assert b.run("bump", flush_update=True) == 5
        assert a.run("bump", flush_update=True) == 5
        assert (a.read_state("n"), b.read_state("n")) == (5, 5)


def test_lambda_ops_work(app: tidal.App) -> None:
    C = app.component("Lambdas")
    C.init_state(lambda: {"n": 0})
    C.serve("get")(lambda state, props: state["n"])
    C.update("get")(lambda state, props: {"n": state["n"] + 1})
    with C("l") as inst:
        assert inst.run("get", flush_update=True) == 0
        assert inst.run("get") == 1


def test_repr_names_component_and_flows() -> None:
    C = Component("Shown")
    C.serve("x")(_state_props_op)
    assert repr(C) == "<Component Shown flows=['x']>"
