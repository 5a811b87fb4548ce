"""save_state / load_state: Motion's hooks for state that is not picklable
as is (a database connection, a client)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app

import tidal
from tidal import StateMigrator, UpdateFailedError


@pytest.fixture
def connections() -> Iterator[list[sqlite3.Connection]]:
    """Every connection the component opens, closed after the test."""
    opened: list[sqlite3.Connection] = []
    yield opened
    for conn in opened:
        conn.close()


def db_component(
    app: tidal.App, opened: list[sqlite3.Connection]
) -> tuple[tidal.Component, list[dict[str, Any]], list[Any]]:
    """A component whose state holds an open sqlite3 connection."""
    C = app.component("Db")
    saved: list[dict[str, Any]] = []
    loaded: list[Any] = []

    def connect(path: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, check_same_thread=False)
        opened.append(conn)
        return conn

    @C.init_state
    def setup(path: str) -> dict[str, Any]:
        conn = connect(path)
        conn.execute("CREATE TABLE IF NOT EXISTS rows (x INTEGER)")
        conn.commit()
        return {"path": path, "conn": conn, "inserted": 0, "items": []}

    @C.save_state
    def save(state: dict[str, Any]) -> dict[str, Any]:
        picklable = {k: v for k, v in state.items() if k != "conn"}
        saved.append(picklable)
        return picklable

    @C.load_state
    def load(picklable: dict[str, Any]) -> dict[str, Any]:
        loaded.append(picklable)
        return {**picklable, "conn": connect(picklable["path"])}

    @C.serve("total")
    def total(state: Any, props: Any) -> tuple[int, int]:
        (n,) = state["conn"].execute("SELECT COALESCE(SUM(x), 0) FROM rows").fetchone()
        return int(n), int(state["inserted"])

    @C.update("insert")
    def insert(state: Any, props: Any) -> dict[str, Any]:
        state["conn"].execute("INSERT INTO rows VALUES (?)", (props["x"],))
        state["conn"].commit()
        return {"inserted": state["inserted"] + 1, "items": [*state["items"], props["x"]]}

    @C.update("fail")
    def fail(state: Any, props: Any) -> dict[str, Any]:
        state["items"].append("leak")
        raise RuntimeError("update failed")

    return C, saved, loaded


def test_state_with_a_connection_survives_via_the_hooks(
    app: tidal.App, tmp_path: Path, connections: list[sqlite3.Connection]
) -> None:
    C, saved, loaded = db_component(app, connections)
    path = str(tmp_path / "user.db")
    with C("d", init_state_params={"path": path}) as d:
        assert saved and "conn" not in saved[0]
        assert d.run("total") == (0, 0)
        d.run("insert", props={"x": 5}, flush_update=True)
        d.run("insert", props={"x": 7}, flush_update=True)
        assert d.run("total") == (12, 2)
        assert d.read_state("items") == [5, 7]
        assert isinstance(d.read_state("conn"), sqlite3.Connection)
        assert d.get_version() == 3
    assert loaded, "load_state was never called"
    assert all("conn" not in s for s in saved)


def test_state_is_rebuilt_by_load_state_in_a_new_app(tmp_path: Path, connections: list[sqlite3.Connection]) -> None:
    path = str(tmp_path / "user.db")
    with make_app("sqlite", tmp_path) as first:
        C, _, _ = db_component(first, connections)
        with C("d", init_state_params={"path": path}) as d:
            d.run("insert", props={"x": 3}, flush_update=True)
    with make_app("sqlite", tmp_path) as second:
        C2, _, loaded = db_component(second, connections)
        with C2("d", init_state_params={"path": "not used"}) as d:
            assert d.run("total") == (3, 1)
            d.run("insert", props={"x": 4}, flush_update=True)
            assert d.run("total") == (7, 2)
        assert loaded[0]["path"] == path


def test_failing_update_does_not_corrupt_whole_state(
    app: tidal.App, tmp_path: Path, connections: list[sqlite3.Connection]
) -> None:
    C, _, _ = db_component(app, connections)
    with C("d", init_state_params={"path": str(tmp_path / "u.db")}) as d:
        d.run("insert", props={"x": 1})
        d.run("fail")
        d.run("insert", props={"x": 2})
        with pytest.raises(UpdateFailedError, match="update failed"):
            d.flush_update()
        assert d.read_state("items") == [1, 2]
        assert d.run("total") == (3, 2)


def test_write_state_on_whole_state(app: tidal.App, tmp_path: Path, connections: list[sqlite3.Connection]) -> None:
    C, saved, _ = db_component(app, connections)
    with C("d", init_state_params={"path": str(tmp_path / "u.db")}) as d:
        d.write_state({"inserted": 10})
        assert d.get_version() == 2
        assert d.run("total") == (0, 10)
        assert saved[-1]["inserted"] == 10
        d.run("insert", props={"x": 1}, flush_update=True)
        assert d.run("total") == (1, 11)


def test_read_state_of_whole_state_is_a_private_copy(
    app: tidal.App, tmp_path: Path, connections: list[sqlite3.Connection]
) -> None:
    C, _, _ = db_component(app, connections)

    @C.serve("items")
    def items(state: Any, props: Any) -> list[Any]:
        return list(state["items"])

    with C("d", init_state_params={"path": str(tmp_path / "u.db")}) as d:
        d.run("insert", props={"x": 1}, flush_update=True)
        mine = d.read_state("items")
        mine.append("mutated by caller")
        assert d.read_state("items") == [1]
        assert d.run("items") == [1]


def test_migration_of_whole_state(app: tidal.App, tmp_path: Path, connections: list[sqlite3.Connection]) -> None:
    C, _, _ = db_component(app, connections)
    with C("d", init_state_params={"path": str(tmp_path / "u.db")}) as d:
        d.run("insert", props={"x": 2}, flush_update=True)

    def migrate(state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "inserted": state["inserted"] * 100, "label": "migrated"}

    (result,) = StateMigrator(C, migrate).migrate()
    assert result.exception is None
    with C("d") as d:
        assert d.read_state("label") == "migrated"
        assert d.run("total") == (2, 100)


def test_save_state_alone(app: tidal.App) -> None:
    """Only save_state: the saved value is the state that is loaded back."""
    C = app.component("SaveOnly")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"keep": 1, "drop": object()}

    @C.save_state
    def save(state: dict[str, Any]) -> dict[str, Any]:
        return {"keep": state["keep"]}

    @C.serve("keys")
    def keys(state: Any, props: Any) -> list[str]:
        return sorted(state)

    with C("s") as s:
        assert s.run("keys") == ["keep"]


def test_load_state_must_return_a_dict(app: tidal.App) -> None:
    C = app.component("BadLoad")
    C.init_state(lambda: {"a": 1})
    C.load_state(lambda saved: [saved])
    with pytest.raises(tidal.InitStateError, match="load_state must return a dict"):
        C("b").read_state("a")
