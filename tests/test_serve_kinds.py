"""Plain, async, generator and async-generator serve ops, through each of
run, arun, gen and agen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import tidal

KINDS = ["plain", "async", "gen", "agen"]


def kinds_component(app: tidal.App) -> tidal.Component:
    """One flow per serve-op kind; every flow's update records serve_result.
    Each serve op returns (or yields) props["n"] numbers counting up from
    state["base"]."""
    C = app.component("Kinds")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"base": 10, "seen": []}

    @C.serve("plain")
    def plain(state: Any, props: Any) -> list[int]:
        return [state["base"] + i for i in range(props["n"])]

    @C.serve("async")
    async def coro(state: Any, props: Any) -> list[int]:
        await asyncio.sleep(0)
        return [state["base"] + i for i in range(props["n"])]

    @C.serve("gen")
    def gen(state: Any, props: Any) -> Iterator[int]:
        for i in range(props["n"]):
            yield state["base"] + i

    @C.serve("agen")
    async def agen(state: Any, props: Any) -> AsyncIterator[int]:
        for i in range(props["n"]):
            await asyncio.sleep(0)
            yield state["base"] + i

    @C.update(KINDS)
    def record(state: Any, props: Any) -> dict[str, Any]:
        return {"seen": [*state["seen"], props.serve_result]}

    return C


def _collect_agen(inst: tidal.Instance, flow: str, props: dict[str, Any]) -> list[Any]:
    async def main() -> list[Any]:
        return [item async for item in inst.agen(flow, props=props)]

    return asyncio.run(main())


# -- run / arun ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_run_returns_the_whole_result(app: tidal.App, kind: str) -> None:
    C = kinds_component(app)
    with C("k") as inst:
        assert inst.run(kind, props={"n": 3}) == [10, 11, 12]


@pytest.mark.parametrize("kind", KINDS)
def test_arun_returns_the_whole_result(app: tidal.App, kind: str) -> None:
    C = kinds_component(app)
    with C("k") as inst:
        assert asyncio.run(inst.arun(kind, props={"n": 3})) == [10, 11, 12]


def test_run_on_a_generator_returns_every_item_not_just_the_first(app: tidal.App) -> None:
    """Motion returned only the first item here."""
    C = app.component("Words")

    @C.serve("words")
    def words(state: Any, props: Any) -> Iterator[str]:
        yield from props["text"].split()

    @C.serve("awords")
    async def awords(state: Any, props: Any) -> AsyncIterator[str]:
        for word in props["text"].split():
            yield word

    with C("w") as w:
        result = w.run("words", props={"text": "the quick brown fox"})
        assert result == ["the", "quick", "brown", "fox"]
        assert isinstance(result, list)
        assert w.run("awords", props={"text": "jumps over"}) == ["jumps", "over"]
        assert w.run("words", props={"text": ""}) == []


# -- gen / agen ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gen", "agen"])
def test_gen_yields_each_item_of_a_streaming_serve(app: tidal.App, kind: str) -> None:
    C = kinds_component(app)
    with C("k") as inst:
        assert list(inst.gen(kind, props={"n": 4})) == [10, 11, 12, 13]


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_gen_yields_the_one_result_of_a_plain_serve(app: tidal.App, kind: str) -> None:
    C = kinds_component(app)
    with C("k") as inst:
        assert list(inst.gen(kind, props={"n": 2})) == [[10, 11]]


@pytest.mark.parametrize("kind", ["gen", "agen"])
def test_agen_yields_each_item_of_a_streaming_serve(app: tidal.App, kind: str) -> None:
    C = kinds_component(app)
    with C("k") as inst:
        assert _collect_agen(inst, kind, {"n": 4}) == [10, 11, 12, 13]


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_agen_yields_the_one_result_of_a_plain_serve(app: tidal.App, kind: str) -> None:
    C = kinds_component(app)
    with C("k") as inst:
        assert _collect_agen(inst, kind, {"n": 2}) == [[10, 11]]


def _lazy_component(app: tidal.App) -> tuple[tidal.Component, list[str]]:
    C = app.component("Lazy")
    events: list[str] = []

    @C.serve("stream")
    def stream(state: Any, props: Any) -> Iterator[int]:
        for i in range(3):
            events.append(f"produce {i}")
            yield i
        events.append("done")

    @C.serve("astream")
    async def astream(state: Any, props: Any) -> AsyncIterator[int]:
        for i in range(3):
            events.append(f"produce {i}")
            yield i
        events.append("done")

    @C.update(["stream", "astream"])
    def after(state: Any, props: Any) -> None:
        events.append(f"update {props.serve_result}")

    return C, events


def test_gen_streams_items_before_the_serve_op_finishes(app: tidal.App) -> None:
    C, events = _lazy_component(app)
    with C("l") as inst:
        stream = inst.gen("stream")
        assert events == []  # nothing runs until the first item is asked for
        assert next(stream) == 0
        assert events == ["produce 0"]
        assert app.store.last_op_id("Lazy", "l") == 0  # updates wait for the end
        assert next(stream) == 1
        assert events == ["produce 0", "produce 1"]
        assert list(stream) == [2]
        inst.flush_update()
        # the update may start as soon as the stream ends, but never before
        assert events == ["produce 0", "produce 1", "produce 2", "done", "update [0, 1, 2]"]


def test_agen_streams_items_before_the_serve_op_finishes(app: tidal.App) -> None:
    C, events = _lazy_component(app)

    async def main(inst: tidal.Instance) -> list[list[str]]:
        snapshots = []
        async for _ in inst.agen("astream"):
            snapshots.append(list(events))
        return snapshots

    with C("l") as inst:
        snapshots = asyncio.run(main(inst))
        assert snapshots == [
            ["produce 0"],
            ["produce 0", "produce 1"],
            ["produce 0", "produce 1", "produce 2"],
        ]
        inst.flush_update()
        assert events[-2:] == ["done", "update [0, 1, 2]"]


# -- serve_result of streaming serves ----------------------------------------------------


Runner = Callable[[tidal.Instance, str, dict[str, Any]], Any]

RUNNERS: dict[str, Runner] = {
    "run": lambda inst, flow, props: inst.run(flow, props=props),
    "arun": lambda inst, flow, props: asyncio.run(inst.arun(flow, props=props)),
    "gen": lambda inst, flow, props: list(inst.gen(flow, props=props)),
    "agen": _collect_agen,
}


@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize("kind", ["gen", "agen"])
def test_update_ops_see_the_list_of_items(app: tidal.App, kind: str, runner: str) -> None:
    C = kinds_component(app)
    with C("k") as inst:
        RUNNERS[runner](inst, kind, {"n": 3})
        RUNNERS[runner](inst, kind, {"n": 1})
        inst.flush_update()
        assert inst.read_state("seen") == [[10, 11, 12], [10]]


@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize("kind", ["plain", "async"])
def test_update_ops_see_a_plain_result_as_is(app: tidal.App, kind: str, runner: str) -> None:
    C = kinds_component(app)
    with C("k") as inst:
        RUNNERS[runner](inst, kind, {"n": 2})
        inst.flush_update()
        assert inst.read_state("seen") == [[10, 11]]


@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize("kind", KINDS)
def test_every_runner_sees_committed_updates(app: tidal.App, kind: str, runner: str) -> None:
    C = kinds_component(app)
    with C("k") as inst:
        inst.write_state({"base": 100})
        out = RUNNERS[runner](inst, kind, {"n": 2})
        flat = out[0] if runner in ("gen", "agen") and kind in ("plain", "async") else out
        assert flat == [100, 101]


# -- async serve ops and event loops ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["async", "agen"])
def test_run_inside_a_running_loop_raises_a_clear_type_error(app: tidal.App, kind: str) -> None:
    C = kinds_component(app)

    async def main(inst: tidal.Instance) -> None:
        inst.run(kind, props={"n": 1})

    with C("k") as inst:
        with pytest.raises(TypeError, match=r"arun") as info:
            asyncio.run(main(inst))
        assert repr(kind) in str(info.value)
        # Nothing was queued for the failed run.
        assert app.store.last_op_id("Kinds", "k") == 0


@pytest.mark.parametrize("kind", ["plain", "gen"])
def test_run_of_a_sync_serve_inside_a_loop_is_fine(app: tidal.App, kind: str) -> None:
    C = kinds_component(app)

    async def main(inst: tidal.Instance) -> Any:
        return inst.run(kind, props={"n": 2})

    with C("k") as inst:
        assert asyncio.run(main(inst)) == [10, 11]


def test_serve_exceptions_reach_the_caller_and_queue_nothing(app: tidal.App) -> None:
    C = app.component("Raising")

    @C.serve("bad")
    def bad(state: Any, props: Any) -> Iterator[int]:
        yield 1
        raise ValueError("serve broke")

    @C.update("bad")
    def never(state: Any, props: Any) -> None:
        raise AssertionError("must not run")

    with C("r") as inst:
        with pytest.raises(ValueError, match="serve broke"):
            inst.run("bad")
        stream = inst.gen("bad")
        assert next(stream) == 1
        with pytest.raises(ValueError, match="serve broke"):
            next(stream)
        assert app.store.last_op_id("Raising", "r") == 0
