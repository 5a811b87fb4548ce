"""Trigger delivery survives crashes: a change is written to the outbox in
its record's transaction, the dispatcher later queues its op with a dedupe
key and only then acknowledges the change. So a process killed before it
dispatched leaves the change for the next one, and a process killed after
queueing but before acknowledging has its changes queued again, and deduped.

The crash tests run real processes on one SQLite file (records, outbox and
state) with one TIDAL_SECRET_KEY, and kill them with SIGKILL."""

from __future__ import annotations

import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app

import tidal
from tidal import Component
from tidal.engine.dispatch import Dispatcher

SECRET = "trigger-durability-secret-key-0123456789"


class Doc(tidal.Record):
    body: str


def define_index(app: tidal.App) -> Component:
    """An inverted index of Doc bodies, and the log of the changes it saw."""
    Index = app.component("Index")

    @Index.init_state
    def setup() -> dict[str, Any]:
        return {"index": {}, "events": []}

    @Index.update(on=Doc)
    def on_doc(state: Any, props: Any) -> dict[str, Any]:
        doc, event = props["record"], props["event"]
        index = {word: set(ids) for word, ids in state["index"].items()}
        gone = set(props["old"].body.split()) if event == "update" else set()
        if event == "delete":
            gone = set(doc.body.split())
        for word in gone:
            index.get(word, set()).discard(doc.id)
        if event != "delete":
            for word in doc.body.split():
                index.setdefault(word, set()).add(doc.id)
        return {
            "index": {word: sorted(ids) for word, ids in index.items() if ids},
            "events": state["events"] + [[event, doc.id]],
        }

    return Index


INDEX = inspect.getsource(Doc) + "\n\n" + inspect.getsource(define_index)
"""The same relation and component, for the children."""

PROC = (
    textwrap.dedent(
        """
    import json, os, sys, threading, time
    from pathlib import Path

    from typing import Any

    import tidal
    from tidal import Component
    from tidal.engine.dispatch import Dispatcher
    from tidal.engine.executor import Executor
    from tidal.relations.database import Database

    mode, db, args = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    """
    )
    + INDEX
    + textwrap.dedent(
        """
    def hang(marker):
        Path(marker + ".tmp").write_text("here")
        os.replace(marker + ".tmp", marker)
        threading.Event().wait()

    if mode == "write":
        crash = args["crash"]
        if crash == "before-dispatch":
            # The dispatcher thread starts with the executor and gets stuck
            # before reading the outbox: nothing is ever dispatched.
            Dispatcher.run_once = lambda self: threading.Event().wait()
        else:
            # No dispatcher thread: the dispatcher's steps run below, by hand.
            tidal.App.start_helpers = lambda self: None
        if crash == "after-enqueue":
            Executor.run_once = lambda self: 0  # the queued ops stay queued

    app = tidal.App(
        "dur",
        store=f"sqlite:///{db}",
        home=db.parent / "home",
        settings=tidal.Settings(lease_seconds=1.0, sweep_seconds=0.1),
    )
    Index = define_index(app)

    if mode == "write":
        docs = app.insert_many([Doc(body=f"common w{i}") for i in range(5)])
        docs.append(app.insert(Doc(body="common solo")))
        app.update(docs[1].model_copy(update={"body": "changed w1"}))
        app.delete(Doc, docs[2].id)
        docs += app.insert_many([Doc(body=f"late w{i}") for i in range(6, 10)])
        Path(args["ids"]).write_text(json.dumps([d.id for d in docs]))
        if crash == "before-dispatch":
            hang(args["marker"])

        def ack_changes(self, ids):
            if crash == "after-run":
                Executor(app).drain()
                while app.store.pending("Index", "global"):
                    time.sleep(0.01)
            hang(args["marker"])

        Database.ack_changes = ack_changes
        Dispatcher(app).run_once()

    elif mode == "recover":
        index = Index("global")
        index.flush_update(timeout=30)
        print(json.dumps({"index": index.read_state("index"), "events": index.read_state("events")}), flush=True)
        app.close()
    """
    )
)


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    script = tmp_path / "dur_proc.py"
    script.write_text(PROC)
    env = {**os.environ, "TIDAL_SECRET_KEY": SECRET, "TIDAL_HOME": str(tmp_path / "home")}
    children: list[subprocess.Popen[str]] = []

    def start(mode: str, **args: Any) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, str(script), mode, str(tmp_path / "dur.db"), json.dumps(args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate()


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def expected(ids: list[str]) -> tuple[list[list[str]], dict[str, list[str]]]:
    """What the child wrote (see PROC): events in order and the final index."""
    events = [["insert", i] for i in ids[:6]] + [["update", ids[1]], ["delete", ids[2]]]
    events += [["insert", i] for i in ids[6:]]
    bodies = {ids[i]: f"common w{i}" for i in range(5)}
    bodies[ids[5]] = "common solo"
    bodies[ids[1]] = "changed w1"
    del bodies[ids[2]]
    bodies.update({ids[i]: f"late w{i}" for i in range(6, 10)})
    index: dict[str, set[str]] = {}
    for doc_id, body in bodies.items():
        for word in body.split():
            index.setdefault(word, set()).add(doc_id)
    return events, {word: sorted(doc_ids) for word, doc_ids in index.items()}


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["before-dispatch", "after-enqueue", "after-run"])
def test_a_process_killed_around_dispatch_loses_no_trigger_and_runs_none_twice(
    proc: Callable[..., subprocess.Popen[str]], tmp_path: Path, crash: str
) -> None:
    """before-dispatch: killed with 12 changes in the outbox and nothing
    queued. after-enqueue: killed after the dispatcher queued the 12 ops,
    before it acknowledged the changes. after-run: the same, but the 12 ops
    had already been applied to the state. The next process must end with
    each change applied exactly once."""
    db = tmp_path / "dur.db"
    marker = tmp_path / "marker"
    writer = proc("write", crash=crash, marker=str(marker), ids=str(tmp_path / "ids.json"))
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert writer.poll() is None, writer.communicate()[1]
        assert time.monotonic() < deadline, "the writer never reached the crash point"
        time.sleep(0.01)
    assert count(db, "tidal_changes") == 12  # nothing acknowledged
    queued = count(db, "tidal_ops")
    applied = count(db, "tidal_state WHERE component = 'Index' AND key = 'events' AND version > 1")
    assert (queued, applied > 0) == {
        "before-dispatch": (0, False),
        "after-enqueue": (12, False),
        "after-run": (0, True),
    }[crash]
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(10)
    assert writer.returncode == -signal.SIGKILL

    recover = proc("recover")
    out, err = recover.communicate(timeout=60)
    assert recover.returncode == 0, err
    state = json.loads(out.strip().splitlines()[-1])
    events, index = expected(json.loads((tmp_path / "ids.json").read_text()))
    assert state["events"] == events
    assert state["index"] == index
    assert count(db, "tidal_changes") == 0
    assert count(db, "tidal_ops") == 0


# -- in one process -----------------------------------------------------------


def test_a_dispatcher_that_fails_before_its_ack_queues_each_change_once(
    app: tidal.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = define_index(app)("global")
    real_ack = app.db.ack_changes
    failing = True

    def ack_changes(ids: list[int]) -> None:
        if failing:
            raise RuntimeError("killed before the ack")
        real_ack(ids)

    monkeypatch.setattr(app.db, "ack_changes", ack_changes)
    a, b = app.insert_many([Doc(body="x"), Doc(body="y")])
    app.delete(Doc, b.id)
    for _ in range(3):  # each attempt queues the ops again, and fails before the ack
        with pytest.raises(RuntimeError, match="killed before the ack"):
            app.dispatch_changes()
    assert app.sql("SELECT count(*) FROM tidal_changes").scalar() == 3
    failing = False
    index.flush_update(timeout=10)
    assert index.read_state("events") == [["insert", a.id], ["insert", b.id], ["delete", b.id]]
    assert index.read_state("index") == {"x": [a.id]}
    assert app.sql("SELECT count(*) FROM tidal_changes").scalar() == 0


def test_dispatchers_of_two_apps_racing_over_one_outbox_queue_each_change_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tidal.engine.dispatch.CHANGE_BATCH", 7)
    apps = [make_app("sqlite", tmp_path) for _ in range(2)]
    try:
        index = define_index(apps[0])("global")
        define_index(apps[1])
        docs = [apps[i % 2].insert(Doc(body=f"w{i}")) for i in range(40)]
        barrier = threading.Barrier(2)

        def dispatch(a: tidal.App) -> None:
            dispatcher = Dispatcher(a)
            barrier.wait()
            while dispatcher.run_once():
                pass

        threads = [threading.Thread(target=dispatch, args=(a,)) for a in apps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        index.flush_update(timeout=10)
        assert index.read_state("events") == [["insert", d.id] for d in docs]
    finally:
        for a in apps:
            a.close()


class Purchase(tidal.Record):
    user: str


def test_a_process_without_a_relation_s_triggers_does_not_swallow_its_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, other = make_app("sqlite", tmp_path), make_app("sqlite", tmp_path)
    try:
        other.db  # noqa: B018 - open, as where its dispatcher runs
        monkeypatch.setattr(writer, "start_helpers", lambda: None)  # dispatch only when asked, below
        Index = define_index(writer)
        Audit = other.component("Audit")

        @Audit.update(on=Purchase)
        def audit(state: Any, props: Any) -> None:
            return None

        doc = writer.insert(Doc(body="hello"))
        other.dispatch_changes()  # the other process's dispatcher gets there first
        index = Index("global")
        index.flush_update(timeout=10)
        assert index.read_state("index") == {"hello": [doc.id]}
    finally:
        writer.close()
        other.close()


def test_a_writer_without_the_components_still_records_changes_for_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API process that only inserts records (it never imports the
    components) must still leave their changes for the process that runs
    the triggers: the trigger registry in the database tells it to."""
    runner = make_app("sqlite", tmp_path)
    # The runner dispatches only when asked (below): its background
    # dispatcher could otherwise consume the change before the writer's
    # dispatch is checked.
    monkeypatch.setattr(runner, "start_helpers", lambda: None)
    Index = define_index(runner)
    index = Index("global")
    runner.db  # noqa: B018 - opening the database declares the Doc trigger in the registry
    writer = make_app("sqlite", tmp_path)  # no components at all
    try:
        doc = writer.insert(Doc(body="hello from the api"))
        assert writer.sql("SELECT count(*) FROM tidal_changes").scalar() == 1
        writer.dispatch_changes()  # knows no trigger: must not consume the change
        assert writer.sql("SELECT count(*) FROM tidal_changes").scalar() == 1
        runner.dispatch_changes()
        index.flush_update(timeout=10)
        assert index.read_state("index")["hello"] == [doc.id]
        assert runner.sql("SELECT count(*) FROM tidal_changes").scalar() == 0
    finally:
        writer.close()
        runner.close()
