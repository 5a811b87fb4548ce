"""Behaviours a Motion app relies on, each checked on its own (Tidal's own
tests of them; Motion's suite itself runs through tests/motion_suite)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import tidal
from tidal import Component


def _counter(update_flow: str, factor: int) -> Component:
    """A ``Counter`` as one of Motion's test modules defines it: every module
    has its own, under the same name, on the default app."""
    C = Component("Counter")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"value": 1}

    @C.serve(update_flow)
    def read(state: Any, props: Any) -> Any:
        return state["value"]

    @C.update(update_flow)
    def change(state: Any, props: Any) -> dict[str, Any]:
        return {"value": state["value"] * factor if update_flow == "multiply" else state["value"] + factor}

    return C


def test_two_components_of_one_name_each_run_their_own_update_ops() -> None:
    first = _counter("multiply", 3)
    second = _counter("add", 44)  # defined later: the name now stands for this one
    with first("a") as a, second("b") as b:
        for _ in range(2):
            a.run("multiply", flush_update=True)
        b.run("add", flush_update=True)
        assert a.read_state("value") == 9
        assert b.read_state("value") == 45
    # Interleaved, with both executors' batches in flight.
    with first("c") as c, second("d") as d:
        for _ in range(5):
            c.run("multiply")
            d.run("add")
        c.flush_update()
        d.flush_update()
        assert (c.read_state("value"), d.read_state("value")) == (3**5, 1 + 5 * 44)


def test_async_update_ops_run() -> None:
    C = Component("AsyncCounter")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0}

    @C.update("bump")
    async def bump(state: Any, props: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"n": state["n"] + props["by"]}

    with C("x") as x:
        for by in (1, 2, 3):
            x.run("bump", props={"by": by})
        x.flush_update()
        assert x.read_state("n") == 6


def test_generator_update_ops_are_refused_at_definition() -> None:
    C = Component("Gen")

    with pytest.raises(tidal.DefinitionError, match="not a generator"):

        @C.update("g")
        def g(state: Any, props: Any) -> Any:
            yield {"n": 1}


def test_a_failed_update_is_a_runtime_error_as_in_motion() -> None:
    C = Component("Fails")

    @C.update("boom")
    def boom(state: Any, props: Any) -> dict[str, Any]:
        raise ValueError("no")

    with C("x") as x, pytest.raises(RuntimeError) as info:
        x.run("boom", flush_update=True)
    assert isinstance(info.value, tidal.UpdateFailedError)
    assert "ValueError: no" in info.value.failures[0].error


def _db_component() -> Component:
    """State holding a cursor on an in-memory database, carried across
    processes only as a count (as in Motion's own example of this)."""
    C = Component("DBComponent")

    @C.init_state
    def setup() -> dict[str, Any]:
        cursor = sqlite3.connect(":memory:").cursor()
        cursor.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        cursor.executemany("INSERT INTO users (name) VALUES (?)", [("John",), ("Jane",)])
        return {"cursor": cursor, "fit_count": 0}

    @C.save_state
    def save(state: dict[str, Any]) -> dict[str, Any]:
        return {"fit_count": state["fit_count"]}

    @C.load_state
    def load(saved: dict[str, Any]) -> dict[str, Any]:
        return {"cursor": sqlite3.connect(":memory:").cursor(), "fit_count": saved["fit_count"]}

    @C.serve("count")
    def count(state: Any, props: Any) -> Any:
        return state["cursor"].execute("SELECT COUNT(*) FROM users").fetchall()

    @C.serve("something")
    def something(state: Any, props: Any) -> Any:
        return state["fit_count"]

    @C.update("something")
    def increment(state: Any, props: Any) -> dict[str, Any]:
        return {"fit_count": state["fit_count"] + 1}

    return C


def test_objects_save_state_cannot_carry_stay_live_in_the_process_that_made_them(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'live.db'}"
    tidal.set_default_app(tidal.App("live", store=store))
    C = _db_component()
    c = C("db")
    assert c.run("count") == [(2,)]
    c.run("something", props={"n": 1}, flush_update=True)
    assert c.run("something", props={"n": 2}) == 1
    assert c.run("count", props={"again": True}) == [(2,)]  # the same cursor, after an update
    c.flush_update()
    assert c.read_state("fit_count") == 2

    # Another process sees what save_state kept: the count, and load_state's new cursor.
    with tidal.App("live", store=store) as other:
        fresh = _db_component()
        fresh.bind(other)
        assert fresh("db").read_state("fit_count") == 2
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            fresh("db").run("count")


def test_redis_params_read_motions_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTION_REDIS_HOST", "cache.internal")
    monkeypatch.setenv("MOTION_REDIS_PORT", "6380")
    monkeypatch.setenv("MOTION_REDIS_DB", "2")
    monkeypatch.setenv("MOTION_REDIS_PASSWORD", "p@ss")
    params = tidal.RedisParams()
    assert params.dict() == {"host": "cache.internal", "port": 6380, "db": 2, "password": "p@ss"}
    assert params.url == "redis://:p%40ss@cache.internal:6380/2"
    assert tidal.RedisParams(host="h", port=1, db=0, password=None).url == "redis://h:1/0"
    monkeypatch.setenv("MOTION_REDIS_PORT", "six")
    with pytest.raises(tidal.ConfigError, match="MOTION_REDIS_PORT"):
        tidal.RedisParams()


def _copyable(app: tidal.App) -> Component:
    C = app.component("Copied")

    @C.init_state
    def setup(n: int = 0) -> dict[str, Any]:
        return {"n": n, "tags": ["a"]}

    return C


def test_copy_db_copies_every_instance_to_another_store(tmp_path: Path, redis_url: str) -> None:
    secret = "copy-test-secret-key-0123456789abcdef"
    src = tidal.App("copy", store=f"sqlite:///{tmp_path / 'src.db'}", secret_key=secret)
    with src:
        C = _copyable(src)
        for i in range(3):
            C(f"i{i}", {"n": i})
        with tidal.App("copy", store=redis_url, secret_key=secret) as dest:
            D = _copyable(dest)
            D("i0", {"n": 99}).write_state({"extra": 1})  # replaced by the copy, stray key and all
            assert asyncio.run(tidal.copy_db(src, dest, ["Copied"])) == 3
            assert sorted(dest.store.list_instances("Copied")) == ["i0", "i1", "i2"]
            dest.forget(D, "i0")
            assert D("i0").read_state("n") == 0
            assert D("i0").read_state("extra", "gone") == "gone"
            assert D("i2").read_state("n") == 2
            with pytest.raises(ValueError, match="same store"):
                tidal.copy_state(src, src.store.url)


def test_get_components_and_update_event_groups() -> None:
    C = Component("Listed")

    @C.update("bump")
    def bump(state: Any, props: Any) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1}

    inst = C("x")
    assert "Listed" in tidal.get_components()
    inst.run("bump")
    inst.run("bump")
    events = tidal.UpdateEventGroup(inst, "bump")
    events.wait()
    assert inst.read_state("n") == 2


def test_logging_level_is_honoured_and_checked() -> None:
    C = Component("Logged")
    logger = logging.getLogger("tidal")
    before = logger.level
    try:
        C("x", logging_level="DEBUG")
        assert logger.level == logging.DEBUG
        with pytest.raises(tidal.DefinitionError, match="logging_level"):
            C("y", logging_level="LOUD")
    finally:
        logger.setLevel(before)


def test_two_components_of_one_name_in_the_update_process(tmp_path: Path) -> None:
    """update_task_type='process': the forked child runs each definition's own ops too."""
    tidal.set_default_app(tidal.App("proc", store=f"sqlite:///{tmp_path / 'proc.db'}"))
    first = _counter("multiply", 3)
    second = _counter("add", 44)
    with first("a", update_task_type="process") as a, second("b", update_task_type="process") as b:
        a.run("multiply", flush_update=True)
        b.run("add", flush_update=True)
        assert (a.read_state("value"), b.read_state("value")) == (3, 45)
