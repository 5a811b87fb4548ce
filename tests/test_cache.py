"""The serve-result cache: keyed by canonical props and state version
(Motion's time-only behaviour on request)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app

import tidal
from tidal.codec import props_key

TTL = 1.0  # seconds: the checks made while an entry is fresh have room on a loaded machine


class Calls:
    """Counts serve-op calls per flow."""

    def __init__(self) -> None:
        self.n: dict[str, int] = {}

    def hit(self, flow: str) -> None:
        self.n[flow] = self.n.get(flow, 0) + 1

    def __getitem__(self, flow: str) -> int:
        return self.n.get(flow, 0)


def cached_component(
    app: tidal.App,
    name: str = "Cached",
    cache_ttl: float = 3600,
    cache_mode: Any = "version",
) -> tuple[tidal.Component, Calls]:
    """``get`` returns state["n"] and echoes props; ``ttl`` does the same with
    cache="ttl"; ``set`` changes n through an update op."""
    C = app.component(name, cache_ttl=cache_ttl, cache_mode=cache_mode)
    calls = Calls()

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0, "seen": []}

    @C.serve("get")
    def get(state: Any, props: Any) -> Any:
        calls.hit("get")
        return (state["n"], dict(props))

    @C.serve("ttl", cache="ttl")
    def get_ttl(state: Any, props: Any) -> Any:
        calls.hit("ttl")
        return state["n"]

    @C.update("set")
    def set_n(state: Any, props: Any) -> dict[str, Any]:
        return {"n": props["n"]}

    return C, calls


def test_a_hit_does_not_call_the_serve_op(app: tidal.App) -> None:
    C, calls = cached_component(app)
    with C("c") as c:
        first = c.run("get", props={"q": "x"})
        for _ in range(5):
            assert c.run("get", props={"q": "x"}) == first
        assert calls["get"] == 1
        c.run("get", props={"q": "y"})
        assert calls["get"] == 2


def test_no_props_and_empty_props_are_cached(app: tidal.App) -> None:
    C, calls = cached_component(app)
    with C("c") as c:
        c.run("get")
        c.run("get", props={})
        c.run("get")
        assert calls["get"] == 1


def test_cache_is_per_instance_and_per_flow(app: tidal.App) -> None:
    C, calls = cached_component(app)
    with C("a") as a, C("b") as b:
        a.write_state({"n": 1})
        b.write_state({"n": 2})
        assert a.run("get", props={"q": 1})[0] == 1
        assert b.run("get", props={"q": 1})[0] == 2
        assert calls["get"] == 2
        assert a.run("ttl", props={"q": 1}) == 1
        assert calls["ttl"] == 1


def test_props_key_order_does_not_matter(app: tidal.App) -> None:
    C, calls = cached_component(app)
    with C("c") as c:
        c.run("get", props={"a": 1, "b": {"x": 1, "y": 2}})
        c.run("get", props={"b": {"y": 2, "x": 1}, "a": 1})
        assert calls["get"] == 1


@pytest.mark.parametrize(
    "variants",
    [
        [1, 1.0, True],
        [0, 0.0, False, None, ""],
        ["1", 1],
    ],
)
def test_equal_comparing_values_of_other_types_are_different_entries(app: tidal.App, variants: list[Any]) -> None:
    C, calls = cached_component(app)
    with C("c") as c:
        results = [c.run("get", props={"v": v}) for v in variants]
        assert calls["get"] == len(variants)
        for v, (_, echoed) in zip(variants, results, strict=True):
            assert type(echoed["v"]) is type(v)
        # ...and each of them is a hit the second time.
        for v in variants:
            c.run("get", props={"v": v})
        assert calls["get"] == len(variants)


def test_dict_keys_of_other_types_are_different_entries(app: tidal.App) -> None:
    C, calls = cached_component(app)
    with C("c") as c:
        _, as_int = c.run("get", props={"m": {1: "a"}})
        _, as_str = c.run("get", props={"m": {"1": "a"}})
        assert as_int == {"m": {1: "a"}}
        assert as_str == {"m": {"1": "a"}}
        assert calls["get"] == 2


def test_committed_update_invalidates(app: tidal.App) -> None:
    C, calls = cached_component(app)
    with C("c") as c:
        assert c.run("get", props={"q": 1})[0] == 0
        c.run("set", props={"n": 5}, flush_update=True)
        assert c.run("get", props={"q": 1})[0] == 5
        assert calls["get"] == 2
        c.run("get", props={"q": 1})
        assert calls["get"] == 2


def test_write_state_invalidates(app: tidal.App) -> None:
    C, calls = cached_component(app)
    with C("c") as c:
        assert c.run("get")[0] == 0
        c.write_state({"n": 3})
        assert c.run("get")[0] == 3
        assert calls["get"] == 2


def test_update_in_another_app_invalidates(tmp_path: Path) -> None:
    """A commit made by another process (here: another App on the same file)
    is seen on the next run: the version, not a local event, keys the cache."""
    with make_app("sqlite", tmp_path) as serving_app, make_app("sqlite", tmp_path) as other_app:
        C, calls = cached_component(serving_app)
        C2, _ = cached_component(other_app)
        with C("c") as c, C2("c") as c2:
            assert c.run("get")[0] == 0
            c2.run("set", props={"n": 9}, flush_update=True)
            assert c.run("get")[0] == 9
            assert calls["get"] == 2


def test_ttl_mode_component_keeps_old_result_until_expiry(app: tidal.App) -> None:
    C, calls = cached_component(app, cache_ttl=TTL, cache_mode="ttl")
    with C("c") as c:
        assert c.run("get")[0] == 0
        c.run("set", props={"n": 1}, flush_update=True)
        assert c.read_state("n") == 1
        assert c.run("get")[0] == 0  # Motion's behaviour: stale until the TTL ends
        assert calls["get"] == 1
        time.sleep(TTL + 0.1)
        assert c.run("get")[0] == 1
        assert calls["get"] == 2


def test_ttl_mode_per_serve_op(app: tidal.App) -> None:
    C, calls = cached_component(app, cache_ttl=TTL)
    with C("c") as c:
        assert c.run("ttl") == 0
        assert c.run("get")[0] == 0
        c.run("set", props={"n": 1}, flush_update=True)
        assert c.run("ttl") == 0  # cache="ttl": stale until the TTL ends
        assert c.run("get")[0] == 1  # the component's default: version-keyed
        assert (calls["ttl"], calls["get"]) == (1, 2)
        time.sleep(TTL + 0.1)
        assert c.run("ttl") == 1
        assert calls["ttl"] == 2


def test_version_mode_entries_also_expire(app: tidal.App) -> None:
    C, calls = cached_component(app, cache_ttl=TTL)
    with C("c") as c:
        c.run("get")
        c.run("get")
        assert calls["get"] == 1
        time.sleep(TTL + 0.1)
        c.run("get")
        assert calls["get"] == 2


def test_cache_ttl_zero_disables_caching(app: tidal.App) -> None:
    C, calls = cached_component(app, cache_ttl=0)
    with C("c") as c:
        for _ in range(3):
            c.run("get", props={"q": 1})
            c.run("ttl", props={"q": 1})
        assert (calls["get"], calls["ttl"]) == (3, 3)
    assert len(app.cache) == 0


def test_ignore_cache_recomputes(app: tidal.App) -> None:
    C, calls = cached_component(app)
    with C("c") as c:
        c.run("get", props={"q": 1})
        c.run("get", props={"q": 1}, ignore_cache=True)
        c.run("get", props={"q": 1}, ignore_cache=True)
        assert calls["get"] == 3


def test_ignore_cache_refreshes_the_entry(app: tidal.App) -> None:
    """As in Motion, the recomputed result replaces the cached one."""
    C, calls = cached_component(app, cache_ttl=3600, cache_mode="ttl")
    with C("c") as c:
        assert c.run("get")[0] == 0
        c.run("set", props={"n": 4}, flush_update=True)
        assert c.run("get")[0] == 0
        assert c.run("get", ignore_cache=True)[0] == 4
        assert c.run("get")[0] == 4
        assert calls["get"] == 2


def test_force_refresh_skips_a_stale_ttl_entry(app: tidal.App) -> None:
    """force_refresh asks for the most up-to-date state, so a time-cached
    result from before the pending updates is not used."""
    C, calls = cached_component(app, cache_ttl=3600, cache_mode="ttl")
    with C("c") as c:
        assert c.run("get")[0] == 0
        c.run("set", props={"n": 6})
        assert c.run("get", force_refresh=True)[0] == 6
        assert c.run("get")[0] == 6
        assert calls["get"] == 2


class Opaque:
    """A value with no canonical form."""

    def __init__(self, v: int) -> None:
        self.v = v


def test_props_that_cannot_be_canonicalised_are_not_cached(app: tidal.App) -> None:
    C = app.component("Opaque")
    calls = Calls()

    @C.serve("f")
    def f(state: Any, props: Any) -> int:
        calls.hit("f")
        return int(props["obj"].v)

    with C("o") as o:
        thing = Opaque(7)
        assert o.run("f", props={"obj": thing}) == 7
        assert o.run("f", props={"obj": thing}) == 7
        assert calls["f"] == 2
    assert len(app.cache) == 0


def test_hit_still_runs_update_ops_with_the_cached_result(app: tidal.App) -> None:
    C = app.component("HitUpdates")
    calls = Calls()

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"log": []}

    @C.serve("f")
    def f(state: Any, props: Any) -> str:
        calls.hit("f")
        props["extra"] = "added by serve"
        return f"result for {props['q']}"

    @C.update("f")
    def log(state: Any, props: Any) -> None:
        # Returns nothing, so the version (and the cache entry) stays.
        calls.n.setdefault("log", 0)
        calls.n["log"] += 1
        logged.append((props.serve_result, props["extra"]))

    logged: list[tuple[str, str]] = []
    with C("h") as h:
        for _ in range(3):
            assert h.run("f", props={"q": "a"}) == "result for a"
        h.flush_update()
    assert calls["f"] == 1
    assert logged == [("result for a", "added by serve")] * 3


def test_cached_streaming_results(app: tidal.App) -> None:
    C = app.component("Stream")
    calls = Calls()

    @C.serve("g")
    def g(state: Any, props: Any) -> Any:
        calls.hit("g")
        yield from range(props["n"])

    with C("s") as s:
        assert list(s.gen("g", props={"n": 3})) == [0, 1, 2]
        assert list(s.gen("g", props={"n": 3})) == [0, 1, 2]
        assert s.run("g", props={"n": 3}) == [0, 1, 2]
        assert calls["g"] == 1


def test_shared_cache_serves_other_apps_on_the_same_store(tmp_path: Path) -> None:
    with make_app("sqlite", tmp_path) as first, make_app("sqlite", tmp_path) as second:
        first.shared_cache = second.shared_cache = True
        C1, calls1 = cached_component(first)
        C2, calls2 = cached_component(second)
        with C1("c") as c1, C2("c") as c2:
            assert c1.run("get", props={"q": 1}) == c2.run("get", props={"q": 1})
        assert (calls1["get"], calls2["get"]) == (1, 0)


# -- the canonical key itself -------------------------------------------------------------


def test_props_key_is_canonical() -> None:
    assert props_key({"a": 1, "b": [1, 2]}) == props_key({"b": [1, 2], "a": 1})
    assert props_key({"a": {"x": 1, "y": 2}}) == props_key({"a": {"y": 2, "x": 1}})
    keys = [props_key({"v": v}) for v in (1, 1.0, True, "1", None)]
    assert len(set(keys)) == len(keys)
    assert props_key({"v": object()}) is None
