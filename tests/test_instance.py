"""The instance API Motion apps use: opening instances, running flows,
reading and writing state, versions, lifecycle."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app

import tidal
from tidal import Component, TidalError, UnknownFlowError
from tidal.engine.executor import Executor


def counter(app: tidal.App, name: str = "Counter") -> tuple[Component, list[dict[str, Any]]]:
    """A counter component; the list records each init_state call's params."""
    C = app.component(name)
    inits: list[dict[str, Any]] = []

    @C.init_state
    def setup(start: int = 0, label: str = "") -> dict[str, Any]:
        inits.append({"start": start, "label": label})
        return {"n": start, "label": label, "items": []}

    @C.serve("add")
    def peek(state: Any, props: Any) -> int:
        return int(state["n"]) + int(props["k"])

    @C.update("add")
    def add(state: Any, props: Any) -> dict[str, Any]:
        return {"n": state["n"] + props["k"]}

    @C.serve("get")
    def get(state: Any, props: Any) -> Any:
        return state[props["key"]]

    return C, inits


# -- opening instances ----------------------------------------------------------------


def test_instance_id_and_init_state_params(app: tidal.App) -> None:
    C, inits = counter(app)
    with C(instance_id="c1", init_state_params={"start": 10, "label": "ten"}) as c:
        assert c.instance_id == "c1"
        assert c.read_state("n") == 10
        assert c.read_state("label") == "ten"
    assert inits == [{"start": 10, "label": "ten"}]


def test_positional_instance_id(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("pos") as c:
        assert c.instance_id == "pos"
    assert "pos" in app.store.list_instances("Counter")


def test_empty_id_gets_a_fresh_random_id(app: tidal.App) -> None:
    C, inits = counter(app)
    a, b = C(), C("")
    assert a.instance_id and b.instance_id
    assert a.instance_id != b.instance_id
    assert sorted(app.store.list_instances("Counter")) == sorted([a.instance_id, b.instance_id])
    assert len(inits) == 2


def test_instance_id_must_be_a_string(app: tidal.App) -> None:
    C, _ = counter(app)
    with pytest.raises(tidal.DefinitionError, match="instance_id must be a string"):
        C(42)  # type: ignore[arg-type]


def test_reopening_keeps_state_and_skips_init_state(app: tidal.App) -> None:
    C, inits = counter(app)
    with C("c1", init_state_params={"start": 1}) as c:
        c.run("add", props={"k": 4}, flush_update=True)
        version = c.get_version()
    with C("c1", init_state_params={"start": 100}) as again:
        assert again.read_state("n") == 5
        assert again.get_version() == version
    assert inits == [{"start": 1, "label": ""}]


def test_reopening_in_a_new_process_app_keeps_state(tmp_path: Path) -> None:
    """A persistent store: a second App on the same file sees the state."""
    with make_app("sqlite", tmp_path) as first:
        C, inits = counter(first)
        with C("p", init_state_params={"start": 2}) as c:
            c.run("add", props={"k": 3}, flush_update=True)
    with make_app("sqlite", tmp_path) as second:
        C2, inits2 = counter(second)
        with C2("p", init_state_params={"start": 50}) as c:
            assert c.read_state("n") == 5
            assert c.get_version() == 2
    assert len(inits) == 1
    assert inits2 == []


def test_instance_name_and_repr(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("abc") as c:
        assert c.instance_name == "Counter__abc"
        assert repr(c) == "<Instance Counter/abc>"


def test_component_instance_alias() -> None:
    assert tidal.ComponentInstance is tidal.Instance


def test_update_task_type_is_validated(app: tidal.App) -> None:
    C, _ = counter(app)
    with pytest.raises(tidal.DefinitionError, match="update_task_type"):
        C("x", update_task_type="fork")  # type: ignore[arg-type]


# -- running flows ------------------------------------------------------------------------


def test_run_arun_gen_agen_on_a_plain_serve(app: tidal.App) -> None:
    C, _ = counter(app)

    async def both(c: tidal.Instance) -> tuple[Any, list[Any]]:
        r = await c.arun("add", props={"k": 2}, flush_update=True)
        items = [x async for x in c.agen("add", props={"k": 3}, flush_update=True)]
        return r, items

    with C("c", init_state_params={"start": 1}) as c:
        assert c.run("add", props={"k": 1}, flush_update=True) == 2  # n: 1 -> 2
        assert list(c.gen("add", props={"k": 5}, flush_update=True)) == [7]  # n -> 7
        assert asyncio.run(both(c)) == (9, [12])  # n -> 9 -> 12
        assert c.read_state("n") == 12


def test_run_flush_update_waits_for_this_runs_updates(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        for k in range(1, 6):
            c.run("add", props={"k": k}, flush_update=True)
            assert c.read_state("n") == k * (k + 1) // 2


def test_arun_flush_update(app: tidal.App) -> None:
    C, _ = counter(app)

    async def main(c: tidal.Instance) -> Any:
        await c.arun("add", props={"k": 7}, flush_update=True)
        return c.read_state("n")

    with C("c") as c:
        assert asyncio.run(main(c)) == 7


def test_props_must_be_a_dict(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c, pytest.raises(TypeError, match="props must be a dict"):
        c.run("add", props=[("k", 1)])  # type: ignore[arg-type]


def test_unknown_flow_key(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        for call in (
            lambda: c.run("nope"),
            lambda: list(c.gen("nope")),
            lambda: asyncio.run(c.arun("nope")),
            lambda: c.flush_update("nope"),
        ):
            with pytest.raises(UnknownFlowError) as info:
                call()
            message = str(info.value)
            assert "Counter" in message
            assert "'nope'" in message
            assert "['add', 'get']" in message
            assert isinstance(info.value, KeyError)
    # Nothing was queued for it.
    assert app.store.last_op_id("Counter", "c") == 0


def test_unknown_flow_is_a_key_error_for_motion_code(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c, pytest.raises(KeyError):
        c.run("missing")


def test_update_ops_get_serve_result(app: tidal.App) -> None:
    C = app.component("Results")
    seen: list[Any] = []

    @C.serve("f")
    def serve(state: Any, props: Any) -> Any:
        seen.append(("serve", props.serve_result))
        return {"answer": props["x"] * 2}

    @C.update("f")
    def update(state: Any, props: Any) -> None:
        seen.append(("update", props.serve_result))

    with C("r") as r:
        assert r.run("f", props={"x": 21}, flush_update=True) == {"answer": 42}
    assert seen == [("serve", None), ("update", {"answer": 42})]


def test_props_added_by_serve_reach_update(app: tidal.App) -> None:
    C = app.component("Carry")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"last": None}

    @C.serve("f")
    def serve(state: Any, props: Any) -> str:
        props["computed"] = props["x"] + 1
        return "ok"

    @C.update("f")
    def update(state: Any, props: Any) -> dict[str, Any]:
        return {"last": (props["x"], props["computed"], props.serve_result)}

    with C("c") as c:
        c.run("f", props={"x": 1}, flush_update=True)
        assert c.read_state("last") == (1, 2, "ok")


def test_flow_with_only_update_ops_returns_none(app: tidal.App) -> None:
    C = app.component("UpdateOnly")
    seen: list[Any] = []

    @C.init_state
    def setup() -> dict[str, int]:
        return {"n": 0}

    @C.update("bump")
    def bump(state: Any, props: Any) -> dict[str, int]:
        seen.append(props.serve_result)
        return {"n": state["n"] + props["k"]}

    async def via_async(c: tidal.Instance) -> list[Any]:
        return [await c.arun("bump", props={"k": 1}), *[x async for x in c.agen("bump", props={"k": 1})]]

    with C("u") as u:
        assert u.run("bump", props={"k": 1}) is None
        assert list(u.gen("bump", props={"k": 1})) == [None]
        assert asyncio.run(via_async(u)) == [None, None]
        u.flush_update()
        assert u.read_state("n") == 4
    assert seen == [None] * 4


def test_serve_only_flow_queues_nothing(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        assert c.run("get", props={"key": "n"}) == 0
        assert app.store.last_op_id("Counter", "c") == 0


def test_serve_sees_read_only_state(app: tidal.App) -> None:
    C = app.component("ReadOnly")

    @C.init_state
    def setup() -> dict[str, int]:
        return {"n": 0}

    @C.serve("write")
    def write(state: Any, props: Any) -> None:
        state["n"] = 5

    with C("r") as r:
        with pytest.raises(TypeError, match="read-only"):
            r.run("write")
        assert r.read_state("n") == 0


# -- state ------------------------------------------------------------------------------------


def test_read_state_default_value(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        assert c.read_state("absent") is None
        assert c.read_state("absent", default_value=7) == 7
        assert c.read_state("n", default_value=7) == 0


def test_read_state_returns_a_private_copy(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        items = c.read_state("items")
        items.append("leak")
        assert c.read_state("items") == []
        assert c.run("get", props={"key": "items"}) == []


def test_write_state_is_seen_by_the_next_serve_and_bumps_version(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        assert c.get_version() == 1
        assert c.run("get", props={"key": "n"}) == 0
        c.write_state({"n": 40, "label": "forty"})
        assert c.get_version() == 2
        assert c.run("get", props={"key": "n"}) == 40
        assert c.run("get", props={"key": "label"}) == "forty"
        assert c.run("add", props={"k": 2}, flush_update=True) == 42
        assert c.read_state("n") == 42


def test_write_state_commits_all_keys_in_one_version(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        c.write_state({"n": 1, "label": "x", "new": [1]})
        read = app.store.read_state("Counter", "c", since=1)
        assert read is not None
        assert read.version == 2
        assert sorted(read.changed) == ["label", "n", "new"]


def test_write_state_is_all_or_nothing(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        with pytest.raises(tidal.StateSerializationError, match="'lock'"):
            c.write_state({"n": 99, "lock": threading.Lock()})
        assert c.read_state("n") == 0
        assert c.read_state("lock") is None
        assert c.get_version() == 1


def test_write_state_rejects_non_dicts_and_non_string_keys(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        with pytest.raises(TypeError, match="dict"):
            c.write_state([("n", 1)])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="strings"):
            c.write_state({1: "x"})  # type: ignore[dict-item]
        assert c.get_version() == 1


def test_get_version_grows_with_updates(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        assert c.get_version() == 1
        versions = []
        for _ in range(3):
            c.run("add", props={"k": 1}, flush_update=True)
            versions.append(c.get_version())
        assert versions == [2, 3, 4]


def test_update_returning_nothing_keeps_the_version(app: tidal.App) -> None:
    C = app.component("Noop")
    C.init_state(lambda: {"n": 0})
    C.update("noop")(lambda state, props: None)
    C.update("empty")(lambda state, props: {})
    with C("n") as n:
        n.run("noop", flush_update=True)
        n.run("empty", flush_update=True)
        assert n.get_version() == 1


# -- lifecycle -------------------------------------------------------------------------------


def test_context_manager_closes(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("c") as c:
        assert c.run("add", props={"k": 1}) == 1
    with pytest.raises(TidalError, match="closed"):
        c.run("add", props={"k": 1})


@pytest.mark.parametrize("method", ["close", "shutdown"])
def test_running_after_close_errors(app: tidal.App, method: str) -> None:
    C, _ = counter(app)
    c = C("c")
    getattr(c, method)()
    getattr(c, method)()  # closing twice is harmless
    for call in (
        lambda: c.run("add", props={"k": 1}),
        lambda: list(c.gen("add", props={"k": 1})),
        lambda: asyncio.run(c.arun("add", props={"k": 1})),
    ):
        with pytest.raises(TidalError, match="closed"):
            call()
    # The state is still there for a new handle.
    with C("c") as again:
        assert again.read_state("n") == 0


def _gated_component(app: tidal.App) -> tuple[Component, threading.Event, list[int]]:
    C = app.component("Gated")
    gate = threading.Event()
    applied: list[int] = []

    @C.init_state
    def setup() -> dict[str, int]:
        return {"n": 0}

    @C.update("slow")
    def slow(state: Any, props: Any) -> dict[str, int]:
        assert gate.wait(10)
        applied.append(props["k"])
        return {"n": state["n"] + props["k"]}

    return C, gate, applied


def test_flush_on_exit_waits_for_queued_updates(app: tidal.App) -> None:
    C, gate, applied = _gated_component(app)
    c = C("g", flush_on_exit=True)
    c.run("slow", props={"k": 3})
    timer = threading.Timer(0.05, gate.set)
    timer.start()
    c.close()
    timer.join()
    assert applied == [3]
    with C("g") as again:
        assert again.read_state("n") == 3


def test_close_without_flush_on_exit_does_not_wait(app: tidal.App) -> None:
    C, gate, applied = _gated_component(app)
    c = C("g")
    c.run("slow", props={"k": 3})
    c.close()
    assert applied == []  # still blocked on the gate
    gate.set()
    with C("g") as again:
        again.flush_update()
        assert again.read_state("n") == 3


def test_flush_on_exit_reports_failures(app: tidal.App) -> None:
    C = app.component("FailOnExit")

    @C.update("boom")
    def boom(state: Any, props: Any) -> None:
        raise RuntimeError("exit failure")

    c = C("f", flush_on_exit=True)
    c.run("boom")
    with pytest.raises(tidal.UpdateFailedError, match="exit failure"):
        c.close()
    with pytest.raises(TidalError, match="closed"):
        c.run("boom")


# -- disable_update_task ----------------------------------------------------------------------


def test_disable_update_task_only_enqueues(app: tidal.App) -> None:
    C, _ = counter(app)
    with C("d", disable_update_task=True) as d:
        assert d.run("add", props={"k": 5}) == 5
        assert d.run("add", props={"k": 6}) == 6
        assert not app.executor_running
        assert app.store.pending("Counter", "d") == 2
        assert d.read_state("n") == 0

        # Another executor (e.g. a worker process) runs them.
        assert Executor(app).drain() >= 1
        assert app.store.pending("Counter", "d") == 0
        assert d.read_state("n") == 11


def test_flush_update_with_the_update_task_disabled_applies_the_ops_in_the_caller(app: tidal.App) -> None:
    """As in Motion: nothing runs in the background, and flush_update (or
    run(..., flush_update=True)) applies what is queued in the calling thread."""
    C, _ = counter(app)
    with C("d", disable_update_task=True) as d, C("other", disable_update_task=True) as other:
        other.run("add", props={"k": 100})
        d.run("add", props={"k": 5})
        d.run("add", props={"k": 6})
        d.flush_update()
        assert d.read_state("n") == 11
        assert d.run("add", props={"k": 1}, flush_update=True) == 12
        assert d.read_state("n") == 12
        assert not app.executor_running  # no update threads were started for it
