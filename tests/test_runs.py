"""The runs log and feedback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tidal
from tidal import Feedback, Run


def counter(app: tidal.App) -> tidal.Component:
    C = app.component("Counter")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0, "scores": []}

    @C.serve("add")
    def preview(state: Any, props: Any) -> int:
        if props["k"] < 0:
            raise ValueError("negative k")
        return int(state["n"] + props["k"])

    @C.update("add")
    def add(state: Any, props: Any) -> dict[str, Any]:
        if props["k"] == 13:
            raise RuntimeError("unlucky")
        return {"n": state["n"] + props["k"]}

    @C.update(on=Feedback, instance=lambda f: f.instance)
    def learn(state: Any, props: Any) -> dict[str, Any]:
        return {"scores": [*state["scores"], props.record.score]}

    return C


def runs(app: tidal.App, **where: Any) -> list[Run]:
    app.runlog.flush()  # type: ignore[union-attr]
    return app.query(Run, where, order_by=["started_at", "kind"])


def test_every_serve_and_update_run_is_a_row(app: tidal.App) -> None:
    C = counter(app)
    with C("c") as c:
        assert c.run("add", props={"k": 2}) == 2
        serve_id = c.last_run_id
        c.flush_update()
        assert c.run("add", props={"k": 2}) == 4
        c.flush_update()
    rows = runs(app, flow="add")
    assert [(r.kind, r.status) for r in rows] == [("serve", "ok"), ("update", "ok")] * 2
    first_serve, first_update = rows[0], rows[1]
    assert first_serve.id == serve_id
    assert (first_serve.component, first_serve.instance, first_serve.props, first_serve.result) == (
        "Counter",
        "c",
        {"k": 2},
        2,
    )
    assert first_serve.version_read == 1 and first_serve.version_written is None
    assert first_update.result == ["n"]  # the keys it changed
    assert (first_update.version_read, first_update.version_written) == (1, 2)
    assert first_update.op_id is not None
    for row in rows:
        assert row.latency_ms >= 0
        assert row.started_at is not None and row.finished_at is not None
        assert row.started_at <= row.finished_at


def test_flush_update_returns_only_after_the_runs_of_what_it_waited_for_are_logged(
    app: tidal.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit is visible in the store before the executor records the
    batch's runs: flush_update must wait for that too, or a caller that
    reads the runs log right after it misses them."""
    C = counter(app)
    runlog = app.runlog
    assert runlog is not None
    record = runlog.record

    def slow_record(entry: Any) -> None:
        if entry.kind == "update":  # serve runs are recorded by the caller itself
            time.sleep(0.2)
        record(entry)

    monkeypatch.setattr(runlog, "record", slow_record)
    with C("c") as c:
        for k in (1, 2, 3):
            c.run("add", props={"k": k})
            c.flush_update()
            logged = app.sql("SELECT count(*) FROM runs WHERE kind = 'update' AND status = 'ok'").scalar()
            assert logged == k


def test_sql_waits_for_a_batch_the_background_writer_is_still_writing(
    app: tidal.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer takes a batch out of the buffer before it writes it: a
    query in between must wait for it, not find the buffer empty and the
    runs missing."""
    C = counter(app)
    runlog = app.runlog
    assert runlog is not None
    writing = threading.Event()
    write = runlog._write

    def slow_write(entries: Any) -> None:
        writing.set()
        time.sleep(0.3)
        write(entries)

    monkeypatch.setattr(runlog, "_write", slow_write)
    with C("c", disable_update_task=True) as c:
        c.run("add", props={"k": 1})
        assert writing.wait(5), "the background writer never ran"
        assert app.sql("SELECT count(*) FROM runs WHERE kind = 'serve'").scalar() == 1


def test_failed_serves_and_updates_are_logged_with_their_traceback(app: tidal.App) -> None:
    C = counter(app)
    with C("c") as c:
        with pytest.raises(ValueError, match="negative"):
            c.run("add", props={"k": -1})
        failed_serve = c.last_run_id
        c.run("add", props={"k": 13})
        with pytest.raises(tidal.UpdateFailedError):
            c.flush_update()
    by_id = {r.id: r for r in runs(app)}
    assert by_id[failed_serve].status == "error"
    assert "negative k" in (by_id[failed_serve].error or "")
    [bad_update] = [r for r in by_id.values() if r.kind == "update"]
    assert bad_update.status == "error"
    assert "unlucky" in (bad_update.error or "")
    assert bad_update.version_written is None


def test_cache_hits_are_runs_too(app: tidal.App) -> None:
    C = app.component("Pure")

    @C.serve("double")
    def double(state: Any, props: Any) -> int:
        return int(props["x"]) * 2

    with C("p") as p:
        p.run("double", props={"x": 3})
        p.run("double", props={"x": 3})
    assert [r.cached for r in runs(app, flow="double")] == [False, True]


def test_last_run_id_is_per_thread(app: tidal.App) -> None:
    C = counter(app)
    c = C("c")
    ids: dict[str, str | None] = {}

    def worker() -> None:
        c.run("add", props={"k": 1})
        ids["thread"] = c.last_run_id

    c.run("add", props={"k": 5})
    ids["main"] = c.last_run_id
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert ids["main"] != ids["thread"]
    assert c.last_run_id == ids["main"]
    rows = {r.id: r for r in runs(app)}
    assert rows[ids["main"]].props == {"k": 5}
    assert rows[ids["thread"]].props == {"k": 1}  # type: ignore[index]
    c.close()


def test_feedback_is_a_relation_that_triggers_updates(app: tidal.App) -> None:
    C = counter(app)
    with C("c") as c:
        c.run("add", props={"k": 1})
        run_id = c.last_run_id
        assert run_id is not None
        stored = app.feedback(run_id, score=0.5, label="good", comment="nice")
        c.flush_update()
        assert c.read_state("scores") == [0.5]
    assert (stored.run_id, stored.component, stored.instance, stored.flow) == (run_id, "Counter", "c", "add")
    rows = app.sql(
        "SELECT f.score, r.flow FROM feedback f JOIN runs r ON r.id = f.run_id WHERE f.label = :label",
        {"label": "good"},
    ).tuples()
    assert rows == [(0.5, "add")]


def test_feedback_on_an_unknown_run_is_refused(app: tidal.App) -> None:
    counter(app)
    with pytest.raises(tidal.RecordNotFoundError, match="no run 'nope'"):
        app.feedback("nope", score=1)
    assert app.sql("SELECT count(*) FROM feedback").scalar() == 0


def test_runs_log_off_writes_nothing(tmp_path: Path) -> None:
    app = tidal.App("quiet", store="memory://", home=tmp_path, runs_log=False)
    C = counter(app)
    with C("c") as c:
        c.run("add", props={"k": 1}, flush_update=True)
        assert c.last_run_id is None
    assert app.runlog is None
    assert app.sql("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").scalar() == 0
    app.close()


def test_retention_purges_old_runs(tmp_path: Path) -> None:
    app = tidal.App("ret", store="memory://", home=tmp_path, runs_retention=timedelta(hours=1))
    C = counter(app)
    with C("c") as c:
        c.run("add", props={"k": 1}, flush_update=True)
    runlog = app.runlog
    assert runlog is not None
    runlog.flush()
    old = datetime.now(UTC) - timedelta(hours=2)
    app.sql("UPDATE runs SET created_at = :old", {"old": old.replace(tzinfo=None)}, write=True)
    c2 = C("d")
    c2.run("add", props={"k": 1}, flush_update=True)
    runlog.flush()
    assert runlog.purge() == 2  # c's serve and update runs
    assert {r.instance for r in runs(app)} == {"d"}
    app.close()


def test_a_clean_exit_loses_no_run(tmp_path: Path) -> None:
    """Runs still buffered when the program ends are written by the exit hook."""
    script = tmp_path / "app.py"
    db = tmp_path / "runs.db"
    script.write_text(
        textwrap.dedent(
            f"""
            import tidal
            app = tidal.App("exit", store="sqlite:///{db}", home="{tmp_path / "home"}")
            C = app.component("Echo")
            @C.serve("echo")
            def echo(state, props):
                return props["i"]
            e = C("e")
            for i in range(500):
                e.run("echo", props={{"i": i}})
            # no close, no flush: the program just ends
            """
        )
    )
    env = {**os.environ, "TIDAL_SECRET_KEY": "exit-test-secret-0123456789"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    app = tidal.App("exit", store=f"sqlite:///{db}", home=tmp_path / "home", secret_key=env["TIDAL_SECRET_KEY"])
    assert app.sql("SELECT count(*), count(DISTINCT id) FROM runs").tuples() == [(500, 500)]
    app.close()


def test_runs_and_feedback_on_postgres(pg_url: str, tmp_path: Path) -> None:
    app = tidal.App("pg", store="memory://", home=tmp_path, db=pg_url)
    C = counter(app)
    with C("c") as c:
        c.run("add", props={"k": 3}, flush_update=True)
        app.feedback(c.last_run_id or "", score=1.0)
        c.flush_update()
        assert c.read_state("scores") == [1.0]
    assert [(r.kind, r.result) for r in runs(app, flow="add")] == [("serve", 3), ("update", ["n"])]
    app.close()


def test_a_runs_log_that_falls_behind_drops_and_counts_instead_of_growing(tmp_path: Path) -> None:
    from tidal.engine.runlog import Entry, RunLog

    app = tidal.App("behind", store="memory://", home=tmp_path)
    log = RunLog(app, max_buffer=3, batch=2)
    log._thread = threading.current_thread()  # keep the writer thread from starting: we flush by hand
    for i in range(5):
        log.record(
            Entry(log.new_id(), "C", "i", "f", "serve", "ok", {"i": i}, i, False, 1, None, None, 0.0, 0.0, None, None)
        )
    assert (log.pending, log.dropped) == (3, 2)
    assert log.flush() == 3  # in two transactions of at most `batch` rows
    assert app.sql("SELECT count(*) FROM runs").scalar() == 3
    app.close()
