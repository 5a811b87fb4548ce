"""Update ops: ordering, commits, failures, discard policies, concurrency."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import tidal
from tidal import DiscardPolicy, UpdateFailedError
from tidal.engine.executor import Executor


def log_component(app: tidal.App, name: str = "Log") -> tidal.Component:
    C = app.component(name)

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"log": [], "n": 0}

    @C.serve("read")
    def read(state: Any, props: Any) -> Any:
        return state[props["key"]]

    @C.update("append")
    def append(state: Any, props: Any) -> dict[str, Any]:
        return {"log": [*state["log"], props["i"]]}

    return C


# -- ordering -----------------------------------------------------------------------------


def test_updates_of_one_instance_apply_in_fifo_order(app: tidal.App) -> None:
    C = log_component(app)
    calls: list[int] = []

    @C.update("append")
    def track(state: Any, props: Any) -> None:
        calls.append(props["i"])

    with C("fifo") as inst:
        for i in range(500):
            inst.run("append", props={"i": i})
        inst.flush_update()
        assert inst.read_state("log") == list(range(500))
    assert calls == list(range(500))


def test_update_ops_of_a_flow_run_in_definition_order(app: tidal.App) -> None:
    C = app.component("Chain")
    order: list[str] = []

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"x": 1, "trail": []}

    @C.update("go")
    def double(state: Any, props: Any) -> dict[str, Any]:
        order.append("double")
        return {"x": state["x"] * 2, "trail": [*state["trail"], "double"]}

    @C.update("go")
    def plus_three(state: Any, props: Any) -> dict[str, Any]:
        order.append("plus_three")
        return {"x": state["x"] + 3, "trail": [*state["trail"], "plus_three"]}

    @C.update("go")
    def square(state: Any, props: Any) -> dict[str, Any]:
        order.append("square")
        return {"x": state["x"] ** 2}

    with C("c") as inst:
        inst.run("go", flush_update=True)
        assert inst.read_state("x") == ((1 * 2) + 3) ** 2
        assert inst.read_state("trail") == ["double", "plus_three"]
        inst.run("go", flush_update=True)
        assert inst.read_state("x") == ((25 * 2) + 3) ** 2
    assert order == ["double", "plus_three", "square"] * 2


# -- commits ----------------------------------------------------------------------------------


def test_a_commit_writes_only_the_keys_returned(app: tidal.App) -> None:
    C = app.component("Sparse")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"big": list(range(1000)), "small": 0, "other": "x"}

    @C.update("bump")
    def bump(state: Any, props: Any) -> dict[str, int]:
        return {"small": state["small"] + 1}

    @C.update("two")
    def two(state: Any, props: Any) -> dict[str, Any]:
        return {"other": "y", "fresh": [1]}

    with C("s") as inst:
        inst.run("bump", flush_update=True)
        read = app.store.read_state("Sparse", "s", since=1)
        assert read is not None
        assert read.version == 2
        assert list(read.changed) == ["small"]

        inst.run("two", flush_update=True)
        read = app.store.read_state("Sparse", "s", since=2)
        assert read is not None
        assert sorted(read.changed) == ["fresh", "other"]

        full = app.store.read_state("Sparse", "s")
        assert full is not None
        assert sorted(full.changed) == ["big", "fresh", "other", "small"]
        assert inst.read_state("big") == list(range(1000))


def test_in_place_mutation_in_a_failing_op_never_leaks(app: tidal.App) -> None:
    C = app.component("Mutate")
    seen: list[list[str]] = []

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"items": [], "meta": {"count": 0}}

    @C.serve("read")
    def read(state: Any, props: Any) -> Any:
        return (list(state["items"]), dict(state["meta"]))

    @C.update("bad")
    def bad(state: Any, props: Any) -> dict[str, Any]:
        state["items"].append("leak")
        state["meta"]["count"] = 99
        raise RuntimeError("after mutating")

    @C.update("good")
    def good(state: Any, props: Any) -> dict[str, Any]:
        seen.append(list(state["items"]))
        return {"items": [*state["items"], "ok"]}

    with C("m") as inst:
        assert inst.run("read") == ([], {"count": 0})
        inst.run("bad")
        inst.run("good")
        with pytest.raises(UpdateFailedError):
            inst.flush_update()
        assert inst.run("read") == (["ok"], {"count": 0})
        assert inst.read_state("items") == ["ok"]
        assert inst.read_state("meta") == {"count": 0}
    assert seen == [[]]


def test_in_place_mutation_of_a_key_not_returned_is_not_committed(app: tidal.App) -> None:
    C = app.component("Sneaky")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"items": [], "n": 0}

    @C.serve("read")
    def read(state: Any, props: Any) -> Any:
        return list(state["items"])

    @C.update("read")
    def sneaky(state: Any, props: Any) -> dict[str, Any]:
        state["items"].append("mutated")
        return {"n": state["n"] + 1}

    with C("s") as inst:
        for _ in range(3):
            assert inst.run("read", flush_update=True) == []
        assert inst.read_state("n") == 3


# -- failures --------------------------------------------------------------------------------


def failing_component(app: tidal.App) -> tidal.Component:
    C = app.component("Flaky")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0}

    @C.update("add")
    def add(state: Any, props: Any) -> dict[str, int]:
        if props.get("fail"):
            raise ValueError(f"refusing {props['k']}")
        return {"n": state["n"] + props["k"]}

    @C.update("other")
    def other(state: Any, props: Any) -> None:
        raise KeyError("other flow broke")

    return C


def test_failing_update_is_reported_with_its_traceback(app: tidal.App) -> None:
    C = failing_component(app)
    with C("f") as inst:
        inst.run("add", props={"k": 1})
        inst.run("add", props={"k": 10, "fail": True})
        inst.run("add", props={"k": 2})
        with pytest.raises(UpdateFailedError) as info:
            inst.flush_update()
        (failure,) = info.value.failures
        assert failure.flow == "add"
        assert (failure.component, failure.instance) == ("Flaky", "f")
        assert "Traceback" in failure.error
        assert "ValueError: refusing 10" in failure.error
        assert "in add" in failure.error
        assert "refusing 10" in str(info.value)
        assert "'add'" in str(info.value)
        # State as if the failed op never ran; the later op still applied.
        assert inst.read_state("n") == 3
        # Reported once.
        inst.flush_update()
        # Later updates keep applying.
        inst.run("add", props={"k": 4}, flush_update=True)
        assert inst.read_state("n") == 7


def test_run_with_flush_update_raises_the_failure(app: tidal.App) -> None:
    C = failing_component(app)
    with C("f") as inst:
        with pytest.raises(UpdateFailedError, match="refusing 5"):
            inst.run("add", props={"k": 5, "fail": True}, flush_update=True)
        inst.run("add", props={"k": 1}, flush_update=True)
        assert inst.read_state("n") == 1


def test_flush_of_one_flow_reports_only_that_flow(app: tidal.App) -> None:
    C = failing_component(app)
    with C("f") as inst:
        inst.run("other")
        inst.run("add", props={"k": 1, "fail": True})
        with pytest.raises(UpdateFailedError) as info:
            inst.flush_update("add")
        assert [f.flow for f in info.value.failures] == ["add"]
        inst.flush_update("add")  # reported once
        # The other flow's failure was not reported yet, so it is now.
        with pytest.raises(UpdateFailedError) as info:
            inst.flush_update()
        assert [f.flow for f in info.value.failures] == ["other"]
        inst.flush_update()


def test_failures_queued_before_a_handle_existed_are_not_its_news(app: tidal.App) -> None:
    C = failing_component(app)
    with C("f") as first:
        first.run("add", props={"k": 1, "fail": True})
        with pytest.raises(UpdateFailedError):
            first.flush_update()
    with C("f") as second:
        second.flush_update()
        second.run("add", props={"k": 2}, flush_update=True)
        assert second.read_state("n") == 2


@pytest.mark.parametrize("returned", [[1, 2], 5, "n", (("n", 1),)])
def test_update_returning_a_non_dict_is_a_failure(app: tidal.App, returned: Any) -> None:
    C = app.component("Returns")

    @C.init_state
    def setup() -> dict[str, int]:
        return {"n": 0}

    @C.update("wrong")
    def wrong(state: Any, props: Any) -> Any:
        return returned

    with C("r") as inst:
        with pytest.raises(UpdateFailedError) as info:
            inst.run("wrong", flush_update=True)
        (failure,) = info.value.failures
        assert "UpdateReturnError" in failure.error
        assert "Returns" in failure.error
        assert "flow 'wrong'" in failure.error
        assert "must return a dict" in failure.error
        assert type(returned).__name__ in failure.error
        assert inst.get_version() == 1


def test_update_returning_non_string_keys_is_a_failure(app: tidal.App) -> None:
    C = app.component("IntKeys")
    C.update("wrong")(lambda state, props: {1: "x"})
    with C("r") as inst, pytest.raises(UpdateFailedError, match="non-string state key 1"):
        inst.run("wrong", flush_update=True)


def test_unpicklable_value_is_a_failure_naming_the_key(app: tidal.App) -> None:
    C = app.component("Locks")

    @C.init_state
    def setup() -> dict[str, int]:
        return {"n": 0}

    @C.update("lock")
    def lock(state: Any, props: Any) -> dict[str, Any]:
        return {"n": 1, "my_lock": threading.Lock()}

    with C("l") as inst:
        with pytest.raises(UpdateFailedError) as info:
            inst.run("lock", flush_update=True)
        error = info.value.failures[0].error
        assert "StateSerializationError" in error
        assert "'my_lock'" in error
        assert "not picklable" in error
        assert "flow 'lock'" in error  # names the component's flow too
        # Nothing of the op was committed, not even its picklable key.
        assert inst.read_state("n") == 0
        assert inst.get_version() == 1


def test_unpicklable_init_state_is_rejected(app: tidal.App) -> None:
    C = app.component("BadInit")
    C.init_state(lambda: {"lock": threading.Lock()})
    with pytest.raises(tidal.StateSerializationError, match="'lock'"):
        C("x")
    assert app.store.get_version("BadInit", "x") is None


# -- discard policies ----------------------------------------------------------------------


def policy_component(app: tidal.App) -> tidal.Component:
    C = app.component("Policies")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"all": [], "newest": [], "fresh": [], "other": []}

    @C.update("a")
    def keep_all(state: Any, props: Any) -> dict[str, Any]:
        return {"all": [*state["all"], props["i"]]}

    @C.update("a", discard_policy=DiscardPolicy.NUM_NEW_UPDATES, discard_after=2)
    def keep_newest(state: Any, props: Any) -> dict[str, Any]:
        return {"newest": [*state["newest"], props["i"]]}

    @C.update("b", discard_policy=DiscardPolicy.NUM_NEW_UPDATES, discard_after=1)
    def other_flow(state: Any, props: Any) -> dict[str, Any]:
        return {"other": [*state["other"], props["i"]]}

    @C.update("s", discard_policy=DiscardPolicy.SECONDS, discard_after=1.0)
    def keep_fresh(state: Any, props: Any) -> dict[str, Any]:
        return {"fresh": [*state["fresh"], props["i"]]}

    return C


def test_num_new_updates_keeps_only_the_newest(app: tidal.App) -> None:
    C = policy_component(app)
    with C("p", disable_update_task=True) as inst:
        for i in range(6):
            inst.run("a", props={"i": i})
            inst.run("b", props={"i": i})  # another flow: does not count as newer
        assert app.store.pending("Policies", "p") == 12
        assert Executor(app).drain() >= 1
        assert app.store.pending("Policies", "p") == 0
        assert inst.read_state("all") == [0, 1, 2, 3, 4, 5]  # DiscardPolicy.NONE
        assert inst.read_state("newest") == [4, 5]
        assert inst.read_state("other") == [5]


def test_num_new_updates_without_a_backlog_runs_everything(app: tidal.App) -> None:
    C = policy_component(app)
    with C("p") as inst:
        for i in range(4):
            inst.run("a", props={"i": i}, flush_update=True)
        assert inst.read_state("newest") == [0, 1, 2, 3]


def test_seconds_policy_drops_ops_that_waited_too_long(app: tidal.App) -> None:
    C = policy_component(app)
    with C("p", disable_update_task=True) as inst:
        inst.run("s", props={"i": 0})
        inst.run("s", props={"i": 1})
        time.sleep(1.2)  # older than discard_after; the op queued next has 1 s to run, room on a loaded machine
        inst.run("s", props={"i": 2})
        Executor(app).drain()
        assert app.store.pending("Policies", "p") == 0
        assert inst.read_state("fresh") == [2]


def test_backlog_processed_by_another_handle(app: tidal.App) -> None:
    C = policy_component(app)
    queued = C("p", disable_update_task=True)
    for i in range(5):
        queued.run("a", props={"i": i})
    with C("p") as worker:
        worker.flush_update()
        assert worker.read_state("all") == [0, 1, 2, 3, 4]
        assert worker.read_state("newest") == [3, 4]
    queued.close()


# -- concurrency ---------------------------------------------------------------------------------


def test_different_instances_update_in_parallel(app: tidal.App) -> None:
    C = app.component("Parallel")
    barrier = threading.Barrier(2)

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"met": False}

    @C.update("meet")
    def meet(state: Any, props: Any) -> dict[str, Any]:
        barrier.wait(timeout=10)  # only passes if the other instance's op runs at the same time
        return {"met": True}

    with C("one") as one, C("two") as two:
        one.run("meet")
        two.run("meet")
        one.flush_update()
        two.flush_update()
        assert one.read_state("met") is True
        assert two.read_state("met") is True


def gated_counter(app: tidal.App) -> tuple[tidal.Component, threading.Event, threading.Event]:
    C = app.component("Gated")
    started = threading.Event()
    gate = threading.Event()

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0}

    @C.serve("get")
    def get(state: Any, props: Any) -> Any:
        return state.get(props.get("key", "n"))

    @C.update("inc")
    def inc(state: Any, props: Any) -> dict[str, int]:
        started.set()
        assert gate.wait(10)
        return {"n": state["n"] + 1}

    return C, started, gate


def test_serve_does_not_wait_for_updates(app: tidal.App) -> None:
    C, started, gate = gated_counter(app)
    with C("g") as inst:
        inst.run("inc")
        assert started.wait(10)
        assert inst.run("get") == 0  # the update is still running
        gate.set()
        inst.flush_update()
        assert inst.run("get") == 1


def test_force_refresh_waits_for_pending_updates(app: tidal.App) -> None:
    C, started, gate = gated_counter(app)
    with C("g") as inst:
        inst.run("inc")
        assert started.wait(10)
        timer = threading.Timer(0.05, gate.set)
        timer.start()
        assert inst.run("get", force_refresh=True) == 1
        timer.join()


def test_write_state_during_a_running_update_loses_neither(app: tidal.App) -> None:
    C, started, gate = gated_counter(app)
    with C("g") as inst:
        inst.run("inc")
        assert started.wait(10)  # the update has read n == 0 and is blocked
        inst.write_state({"n": 100, "note": "written"})
        gate.set()
        inst.flush_update()
        # The update was re-run on top of the write: neither change is lost.
        assert inst.read_state("n") == 101
        assert inst.read_state("note") == "written"


def test_many_threads_running_one_instance(app: tidal.App) -> None:
    C = log_component(app)
    with C("t") as inst:

        def worker(base: int) -> None:
            for i in range(50):
                inst.run("append", props={"i": base + i})

        threads = [threading.Thread(target=worker, args=(b * 1000,)) for b in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        inst.flush_update()
        log = inst.read_state("log")
        assert sorted(log) == sorted(b * 1000 + i for b in range(4) for i in range(50))
        for b in range(4):  # each thread's runs stay in its order
            assert [x for x in log if b * 1000 <= x < (b + 1) * 1000] == [b * 1000 + i for i in range(50)]
