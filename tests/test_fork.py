"""Processes forked from a parent that already used Tidal (gunicorn workers,
multiprocessing with the fork start method): each child starts its own
executor and applies its updates at once and exactly once, never waiting on
the parent's executor (whose threads do not exist in the child), a lock a
parent's thread held at the fork, or the parent's store connections."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

import tidal

UPDATES = 150
BOUND_S = 5.0
"""Generous: a child does its updates in ~0.1 s; before the fixes, its flush
waited on the parent's executor (a sweep) or, on SQLite, for ever."""


def _component(app: tidal.App) -> tidal.Component:
    Counter = tidal.Component("ForkCounter", app=app)

    @Counter.init_state
    def setup() -> dict[str, int]:
        return {"n": 0}

    @Counter.update("inc")
    def inc(state: dict[str, int], props: dict[str, int]) -> dict[str, int]:
        return {"n": state["n"] + 1}

    return Counter


def _child(Counter: tidal.Component, iid: str, out: Path) -> None:
    t0 = time.perf_counter()
    inst = Counter(instance_id=iid)
    for i in range(UPDATES):
        inst.run("inc", props={"i": i, "pid": os.getpid()})
    inst.flush_update("inc", timeout=60)
    out.write_text(f"{time.perf_counter() - t0}")
    inst.shutdown()


def _fork_children(app: tidal.App, tmp_path: Path, trials: int = 3) -> None:
    Counter = _component(app)
    ctx = multiprocessing.get_context("fork")
    for t in range(trials):
        iid = f"fork-{t}"
        parent = Counter(instance_id=iid)
        parent.run("inc", props={"i": -1})
        parent.flush_update("inc")
        assert app.executor_running
        outs = [tmp_path / f"child-{t}-{k}" for k in range(2)]
        children = [ctx.Process(target=_child, args=(Counter, iid, out)) for out in outs]
        for c in children:
            c.start()
        for c in children:
            c.join(60)
        codes = [c.exitcode for c in children]
        for c in children:
            if c.exitcode is None:
                c.kill()
                c.join()
        assert codes == [0, 0], f"trial {t}: children exited with {codes}"
        for out in outs:
            assert float(out.read_text()) < BOUND_S, f"trial {t}: a child took {out.read_text()} s"
        assert parent.read_state("n") == 2 * UPDATES + 1  # exactly once
        assert parent.get_version() == 2 * UPDATES + 2
        parent.shutdown()


def test_forked_children_update_at_once_sqlite(tmp_path: Path) -> None:
    """Relations (the runs log) in a file of their own: the configuration in
    which forked SQLite children are known to work (45 of 45 stressed runs)."""
    app = tidal.App(
        "fork-sqlite",
        store=f"sqlite:///{tmp_path / 'fork.db'}",
        db=f"sqlite:///{tmp_path / 'relations.db'}",
        home=tmp_path / "home",
    )
    try:
        _fork_children(app, tmp_path)
    finally:
        app.close()


@pytest.mark.xfail(
    strict=False,
    reason="known, not fixed: with the runs log in the state store's SQLite file (the default), a child "
    "forked while the parent is busy can find the file locked for good when it opens its first "
    "connection (about 1 in 20 runs on a loaded machine); the parent's SQLAlchemy connections to the "
    "same file are involved, the exact lock is not yet found",
)
def test_forked_children_update_at_once_sqlite_relations_in_the_store_file(tmp_path: Path) -> None:
    app = tidal.App("fork-sqlite-shared", store=f"sqlite:///{tmp_path / 'fork.db'}", home=tmp_path / "home")
    try:
        _fork_children(app, tmp_path, trials=1)
    finally:
        app.close()


def test_forked_children_update_at_once_redis(tmp_path: Path, redis_url: str) -> None:
    app = tidal.App("fork-redis", store=redis_url, home=tmp_path / "home")
    try:
        _fork_children(app, tmp_path)
    finally:
        app.close()


def test_child_drops_what_the_parent_holds(tmp_path: Path) -> None:
    """The executor, the locks and the SQLite connections of the parent are
    not the child's: after os.fork the child has no executor until it needs
    one, and its store opens a connection of its own."""
    app = tidal.App("fork-state", store=f"sqlite:///{tmp_path / 'fork.db'}", home=tmp_path / "home")
    Counter = _component(app)
    inst = Counter(instance_id="a")
    inst.run("inc", props={})
    inst.flush_update("inc")
    parent_conn = app.store.db.conn()  # type: ignore[attr-defined]
    app._snap_lock.acquire()  # as if a parent's thread held it at the fork
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        ok = 0
        try:
            os.close(r)
            ok = (
                app._executor is None
                and not app.executor_running
                and app.store.db.conn() is not parent_conn  # type: ignore[attr-defined]
                and app._snap_lock.acquire(timeout=1)
            )
            inst.run("inc", props={})
            inst.flush_update("inc", timeout=BOUND_S)
            ok = ok and app._executor is not None and inst.read_state("n") == 2
        finally:
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
    os.close(w)
    app._snap_lock.release()
    try:
        _, status = os.waitpid(pid, 0)
        assert os.read(r, 1) == b"1"
        assert os.waitstatus_to_exitcode(status) == 0
        assert inst.read_state("n") == 2
    finally:
        os.close(r)
        app.close()


@pytest.mark.parametrize("with_runs", [True])
def test_child_exit_leaves_no_lease(tmp_path: Path, with_runs: bool) -> None:
    """A multiprocessing child ends with os._exit: its executor is stopped
    (after the batch in hand) first, so no lease is left for others to wait out."""
    del with_runs
    app = tidal.App("fork-exit", store=f"sqlite:///{tmp_path / 'fork.db'}", home=tmp_path / "home")
    Counter = _component(app)
    inst = Counter(instance_id="a")
    inst.run("inc", props={})
    inst.flush_update("inc")
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child, args=(Counter, "a", tmp_path / "out"))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    t0 = time.perf_counter()
    inst.run("inc", props={})
    inst.flush_update("inc", timeout=BOUND_S)
    assert time.perf_counter() - t0 < BOUND_S
    assert inst.read_state("n") == UPDATES + 2
    app.close()
