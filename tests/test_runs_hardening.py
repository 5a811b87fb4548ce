"""The runs log never wedges on a run it cannot store, shows how its writer
is doing, and loses no run of a forked process or of one stopped by SIGTERM.

Everything here writes to real SQLite files; the process tests fork real
processes (os.fork, multiprocessing with the fork start method) or run a
real subprocess."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import tidal
from tidal import Run
from tidal.engine.runlog import Entry, RunLog

SECRET = "runs-hardening-secret-0123456789"


def _app(tmp_path: Path, name: str = "hard", **kwargs: Any) -> tidal.App:
    return tidal.App(
        name,
        store=kwargs.pop("store", f"sqlite:///{tmp_path / 'state.db'}"),
        home=tmp_path / "home",
        secret_key=SECRET,
        **kwargs,
    )


def _topics(app: tidal.App) -> tidal.Component:
    C = app.component("Topics")

    @C.serve("lookup")
    def lookup(state: Any, props: Any) -> Any:
        topic = props["topic"]
        if topic.startswith("?"):
            raise ValueError(f"unknown topic: {topic}")
        return props.get("payload", topic)

    return C


def _runlog(app: tidal.App) -> RunLog:
    runlog = app.runlog
    assert runlog is not None
    return runlog


def _wait(condition: Any, what: str, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"still waiting after {deadline_s:.0f} s for {what}")
        time.sleep(0.05)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tidal.App]:
    a = _app(tmp_path)
    yield a
    a.close()


# --------------------------------------------------------------------------- runs the database refuses


def test_a_run_with_a_lone_surrogate_is_stored_escaped_and_the_log_goes_on(app: tidal.App) -> None:
    """A serve op that fails with the bad input in its message: the
    traceback holds a lone surrogate, which SQLite cannot encode. The log
    stored nothing after it and app.sql raised until restart; now the run is
    stored with the surrogate escaped, and later runs are stored too."""
    C = _topics(app)
    runlog = _runlog(app)
    t = C("t")
    with pytest.raises(ValueError, match="unknown topic"):
        t.run("lookup", props={"topic": "?\ud800"})
    bad_id = t.last_run_id
    assert t.run("lookup", props={"topic": "news"}) == "news"
    good_id = t.last_run_id
    # app.sql flushes the log itself: it used to raise UnicodeEncodeError here.
    assert app.sql("SELECT count(*) FROM runs").scalar() == 2
    bad = app.get(Run, bad_id or "")
    assert bad is not None and bad.status == "error"
    assert bad.error is not None and "unknown topic: ?\\ud800" in bad.error
    assert bad.props is not None  # kept, in some storable form
    stored = app.get(Run, good_id or "")
    assert stored is not None and stored.result == "news"
    app.feedback(good_id or "", score=1.0)  # feedback works (it flushes the log too)
    stats = runlog.stats()
    assert (stats.written, stats.failed, stats.pending) == (2, 0, 0)
    assert stats.escaped >= 1 and stats.last_error is not None and "UnicodeEncodeError" in stats.last_error
    # The background writer is not stuck either: a later run gets written
    # without anyone flushing.
    t.run("lookup", props={"topic": "sport"})
    _wait(lambda: runlog.stats().written == 3, "the writer thread to store a run recorded after the bad one")
    assert runlog.stats().healthy


def test_text_over_the_cap_is_cut_with_a_marker(app: tidal.App) -> None:
    C = _topics(app)
    runlog = _runlog(app)
    runlog.max_text = 1000  # the limit is MAX_TEXT_CHARS (a megabyte); small here to keep the test light
    t = C("t")
    assert t.run("lookup", props={"topic": "big", "payload": "x" * 5000}) == "x" * 5000
    big_id = t.last_run_id
    with pytest.raises(ValueError):
        t.run("lookup", props={"topic": "?" + "y" * 5000})
    error_id = t.last_run_id
    runlog.flush()
    big = app.get(Run, big_id or "")
    assert big is not None and isinstance(big.result, dict)
    assert big.result["tidal_truncated"] is True and big.result["json_chars"] == 5002
    assert big.props["tidal_truncated"] is True  # {"topic": ..., "payload": 5000 x} is over the cap as well
    failed = app.get(Run, error_id or "")
    assert failed is not None and failed.error is not None
    assert len(failed.error) < 1200 and failed.error.endswith("characters]")
    assert "[tidal: cut to 1000 of" in failed.error
    assert runlog.stats().truncated == 2


def _limit_sqlite_text(app: tidal.App, max_bytes: int) -> None:
    """Make the relations database refuse text over ``max_bytes`` (as SQLite
    does past 1e9 bytes: 'string or blob too big'), for every connection."""
    engine = app.db.engine

    @sa.event.listens_for(engine, "connect")
    def limit(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_bytes)

    engine.dispose()


def test_a_row_the_database_refuses_is_stored_without_props_and_result(app: tidal.App) -> None:
    C = _topics(app)
    runlog = _runlog(app)
    app.db.relation(Run)  # the table exists before the limit (its schema text is long)
    _limit_sqlite_text(app, 20_000)
    t = C("t")
    runlog._thread = threading.current_thread()  # no writer thread: one batch, written by the flush below
    t.run("lookup", props={"topic": "a"})
    t.run("lookup", props={"topic": "huge", "payload": "z" * 50_000})
    huge_id = t.last_run_id
    t.run("lookup", props={"topic": "b"})
    assert runlog.flush() == 3
    rows = app.sql("SELECT props, result, error FROM runs ORDER BY started_at").tuples()
    assert [r[1] for r in rows] == ['"a"', None, '"b"']  # the others of the batch are stored in full
    huge = app.get(Run, huge_id or "")
    assert huge is not None and huge.props is None and huge.result is None and huge.status == "ok"
    assert huge.error is not None and "string or blob too big" in huge.error
    stats = runlog.stats()
    assert (stats.written, stats.reduced, stats.failed) == (3, 1, 0)


def test_a_row_that_cannot_be_stored_at_all_is_counted_and_dropped(app: tidal.App) -> None:
    runlog = _runlog(app)
    runlog._thread = threading.current_thread()  # flushed by hand
    entry = Entry(runlog.new_id(), "C", "i", "f", "serve", "ok", {"k": 1}, 1, False, 1, None, None, time.time(),
                  0.001, None, None)  # fmt: skip
    runlog.record(entry)
    runlog.record(entry)  # the same id again: the table refuses it, reduced or not
    assert runlog.flush() == 2
    later = entry._replace(id=runlog.new_id())
    runlog.record(later)
    assert runlog.flush() == 1
    assert app.sql("SELECT count(*) FROM runs").scalar() == 2
    stats = runlog.stats()
    assert (stats.written, stats.failed, stats.pending) == (2, 1, 0)
    assert stats.last_error is not None and "UNIQUE" in stats.last_error


def test_a_database_that_fails_keeps_the_runs_for_the_next_try(app: tidal.App, monkeypatch: pytest.MonkeyPatch) -> None:
    """'database is locked' is the database, not the run: nothing is dropped."""
    runlog = _runlog(app)
    runlog._thread = threading.current_thread()  # flushed by hand
    write = runlog._write
    failures = [2]

    def locked(entries: list[Entry]) -> None:
        if failures[0]:
            failures[0] -= 1
            raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        write(entries)

    monkeypatch.setattr(runlog, "_write", locked)
    for i in range(3):
        runlog.record(Entry(runlog.new_id(), "C", "i", "f", "serve", "ok", i, i, False, 1, None, None, time.time(),
                            0.0, None, None))  # fmt: skip
    for _ in range(2):
        with pytest.raises(sa.exc.OperationalError):
            runlog.flush()
        stats = runlog.stats()
        assert (stats.pending, stats.failed, stats.retrying) == (3, 0, True)
        assert stats.last_error is not None and "database is locked" in stats.last_error
    assert runlog.flush() == 3
    assert not runlog.stats().retrying
    assert app.sql("SELECT count(*) FROM runs").scalar() == 3


def test_readyz_shows_the_runs_log(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tidal.server import create_app

    app = _app(tmp_path)
    C = _topics(app)
    try:
        with TestClient(create_app(app)) as http:
            C("t").run("lookup", props={"topic": "x"})
            _runlog(app).flush()
            ready = http.get("/readyz")
            assert ready.status_code == 200
            shown = ready.json()["checks"]["runs_log"]
            assert shown["ok"] is True and shown["required"] is False
            assert (shown["written"], shown["failed"], shown["pending"], shown["alive"]) == (1, 0, 0, True)
            # A dead writer shows, without taking the process out of service.
            _runlog(app)._stop.set()
            ready = http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["runs_log"]["ok"] is False
    finally:
        app.close()


# --------------------------------------------------------------------------- processes


def _echo(app: tidal.App) -> tidal.Component:
    C = app.component("Echo")

    @C.serve("echo")
    def echo(state: Any, props: Any) -> Any:
        return props["i"]

    return C


def _fork_app(tmp_path: Path) -> tidal.App:
    # State in memory (each process has its copy); the runs log in a SQLite file.
    return _app(tmp_path, "forks", store="memory://", db=f"sqlite:///{tmp_path / 'runs.db'}")


def test_a_forked_child_writes_its_own_runs_and_not_its_parents(tmp_path: Path) -> None:
    """The child of os.fork gets a writer of its own (the parent's thread is
    gone and its write lock may be held), its own run ids, and none of the
    runs the parent had buffered: those the parent writes."""
    app = _fork_app(tmp_path)
    e = _echo(app)("e")
    runlog = _runlog(app)
    try:
        e.run("echo", props={"i": -1})
        runlog.flush()  # the writer thread runs and the database is open
        with runlog._write_lock:  # the parent's writer is mid-write at the fork
            for i in range(5):
                e.run("echo", props={"i": i})
            assert runlog.pending == 5
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child; its result is its exit status
                code = 1
                try:
                    for i in range(100, 107):
                        e.run("echo", props={"i": i})
                    end = time.monotonic() + 60
                    # A batch counts as pending until its rows are written: wait
                    # for both counters to settle.
                    while not (runlog.stats().written == 7 and runlog.pending == 0) and time.monotonic() < end:
                        time.sleep(0.05)
                    code = 0 if runlog.stats().written == 7 and runlog.pending == 0 else 3
                finally:
                    os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child's writer did not store its 7 runs"
        runlog.flush()
        rows = app.sql("SELECT count(*), count(DISTINCT id) FROM runs").tuples()
        assert rows == [(13, 13)]  # 1 + 5 of the parent, 7 of the child, none twice
        results = sorted(r.result for r in app.query(Run))
        assert results == [-1, *range(5), *range(100, 107)]
    finally:
        app.close()


def _mp_child(app: tidal.App, first: int, n: int) -> None:
    e = _echo_of(app)
    for i in range(first, first + n):
        e.run("echo", props={"i": i})
    # Returns without flushing or closing: multiprocessing ends the child
    # with os._exit, past atexit.


def _echo_of(app: tidal.App) -> Any:
    return app.components["Echo"]("e")


def test_multiprocessing_children_write_their_runs_before_they_exit(tmp_path: Path) -> None:
    app = _fork_app(tmp_path)
    e = _echo(app)("e")
    try:
        e.run("echo", props={"i": -1})  # the parent's log is started before the fork
        ctx = multiprocessing.get_context("fork")
        children = [ctx.Process(target=_mp_child, args=(app, 1000 * k, 50)) for k in range(1, 4)]
        for child in children:
            child.start()
        for child in children:
            child.join(120)
            assert child.exitcode == 0
        rows = app.sql("SELECT count(*), count(DISTINCT id) FROM runs").tuples()
        assert rows == [(151, 151)]
    finally:
        app.close()


_POOL_APP: list[tidal.App] = []
"""The app the pool's forked workers inherit (set before the pool starts)."""


def _pool_task(i: int) -> int:
    _echo_of(_POOL_APP[0]).run("echo", props={"i": i})
    return i


def test_pool_workers_stopped_by_sigterm_write_their_runs_first(tmp_path: Path) -> None:
    """Leaving ``with Pool()`` terminates the workers (SIGTERM) right after
    the map: their buffered runs are written before they die."""
    app = _fork_app(tmp_path)
    _echo(app)
    _POOL_APP[:] = [app]
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            assert sorted(pool.map(_pool_task, range(40), chunksize=5)) == list(range(40))
        rows = app.sql("SELECT count(*), count(DISTINCT id) FROM runs").tuples()
        assert rows == [(40, 40)]
    finally:
        app.close()


def test_sigterm_writes_the_buffered_runs_and_the_process_still_dies_of_it(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    script = tmp_path / "serve.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            import tidal
            from tidal.engine.runlog import RunLog
            # A writer thread that has not got round to writing yet: the runs
            # stay buffered until the process is told to stop.
            RunLog._loop = lambda self: self._stop.wait()
            app = tidal.App("term", store="memory://", db="sqlite:///{db}", home="{tmp_path / "home"}")
            C = app.component("Echo")
            @C.serve("echo")
            def echo(state, props):
                return props["i"]
            e = C("e")
            for i in range(300):
                e.run("echo", props={{"i": i}})
            print(app.runlog.pending, flush=True)
            print("ready", flush=True)
            time.sleep(120)
            """
        )
    )
    env = {**os.environ, "TIDAL_SECRET_KEY": SECRET}
    with subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "300"
            assert proc.stdout.readline().strip() == "ready"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == -signal.SIGTERM  # dies of the signal, as without a handler
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    app = _app(tmp_path, "term", store="memory://", db=f"sqlite:///{db}")
    try:
        assert app.sql("SELECT count(*), count(DISTINCT id) FROM runs").tuples() == [(300, 300)]
    finally:
        app.close()


def test_a_runs_table_another_process_created_meanwhile_is_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes open the database at once: both see no ``runs`` table,
    one creates it, the other's CREATE TABLE fails. It adopts the table."""
    first = _fork_app(tmp_path)
    second = _fork_app(tmp_path)
    try:
        first.db.relation(Run)  # the other process wins the race
        seen = []
        has_table = sa.engine.reflection.Inspector.has_table

        def looked_before(self: Any, name: str, *args: Any, **kwargs: Any) -> bool:
            if name == "runs" and not seen:  # the second looked before the first created it
                seen.append(name)
                return False
            return bool(has_table(self, name, *args, **kwargs))

        monkeypatch.setattr(sa.engine.reflection.Inspector, "has_table", looked_before)
        second.db.relation(Run)
        assert seen == ["runs"]
        _echo(second)("e").run("echo", props={"i": 1})
        assert second.sql("SELECT count(*) FROM runs").scalar() == 1
    finally:
        first.close()
        second.close()


def _first_use(tmp: str, k: int, barrier: Any) -> None:
    app = tidal.App("race", store="memory://", db=f"sqlite:///{tmp}/race.db", home=f"{tmp}/home", secret_key=SECRET)
    C = app.component("Echo")

    @C.serve("echo")
    def echo(state: Any, props: Any) -> Any:
        return props["i"]

    barrier.wait(60)
    e = C("e")
    for i in range(20):
        e.run("echo", props={"i": k * 100 + i})
    app.close()


def test_processes_using_the_log_for_the_first_time_at_once_store_every_run(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    children = [ctx.Process(target=_first_use, args=(str(tmp_path), k, barrier)) for k in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    app = tidal.App("race", store="memory://", db=f"sqlite:///{tmp_path}/race.db", home=tmp_path / "home",
                    secret_key=SECRET)  # fmt: skip
    try:
        assert app.sql("SELECT count(*), count(DISTINCT id) FROM runs").tuples() == [(80, 80)]
    finally:
        app.close()


def test_an_outbox_table_another_process_created_meanwhile_is_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race on the outbox of changes (``tidal_changes``): seen in a
    benchmark where a parent and its update process opened the database at once."""
    first = _fork_app(tmp_path)
    second = _fork_app(tmp_path)
    try:
        first.db  # noqa: B018 - the other process wins the race
        seen: list[str] = []
        dialect = type(first.db.engine.dialect)  # CREATE ... checkfirst asks the dialect
        has_table = dialect.has_table

        def looked_before(self: Any, conn: Any, name: str, *args: Any, **kwargs: Any) -> bool:
            if name == "tidal_changes" and not seen:
                seen.append(name)
                return False
            return bool(has_table(self, conn, name, *args, **kwargs))

        monkeypatch.setattr(dialect, "has_table", looked_before)
        second.db  # noqa: B018
        assert seen == ["tidal_changes"]
        _echo(second)("e").run("echo", props={"i": 1})
        assert second.sql("SELECT count(*) FROM runs").scalar() == 1
    finally:
        first.close()
        second.close()
