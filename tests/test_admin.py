"""tidal.admin: the operator's view of an app, on memory and SQLite apps
(the ``app`` fixture) and on Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tidal
from tidal import admin
from tidal.config import Settings
from tidal.exceptions import NotFoundError, UpdateFailedError, VersionConflictError


class Doc(tidal.Record):
    text: str


def define(app: tidal.App, *, schedule: bool = False) -> tidal.Component:
    Notes = app.component("Notes")

    @Notes.init_state
    def setup() -> dict[str, object]:
        return {"items": [], "count": 0}

    @Notes.serve("add")
    def show(state, props):  # type: ignore[no-untyped-def]
        return len(state["items"])

    @Notes.update("add")
    def add(state, props):  # type: ignore[no-untyped-def]
        if props.get("fail"):
            raise RuntimeError("cannot add " + props["item"])
        return {"items": [*state["items"], props["item"]], "count": state["count"] + 1}

    @Notes.update(on=Doc, instance=lambda d: "docs")
    def index(state, props):  # type: ignore[no-untyped-def]
        return {"count": state["count"] + 1}

    if schedule:

        @Notes.update(every="1h", instance="docs")
        def compact(state, props):  # type: ignore[no-untyped-def]
            return {}

    return Notes


def test_components_list_flows_with_their_ops_triggers_and_schedules(app: tidal.App) -> None:
    Notes = define(app, schedule=True)
    Notes("n1").close()
    (info,) = admin.components(app)
    assert info.name == "Notes" and info.instances in (1, 2)  # n1, and "docs" once the schedule ticked
    flows = {f.name: f for f in info.flows}
    assert flows["add"].serve == "show" and flows["add"].serve_kind == "sync"
    assert flows["add"].updates == ["add"]
    triggered = [f for f in info.flows if f.triggers]
    assert len(triggered) == 1 and triggered[0].triggers == ["Doc:insert,update,delete"]
    scheduled = [f for f in info.flows if f.schedules]
    assert len(scheduled) == 1 and scheduled[0].schedules == ["every 3600s"]
    json.dumps(info.as_dict())
    with pytest.raises(NotFoundError, match=r"no component Nope in app 'test'; known: Notes"):
        admin.component(app, "Nope")


def test_instances_and_state_with_versions_sizes_and_values(app: tidal.App) -> None:
    Notes = define(app)
    with Notes("n1") as n:
        n.run("add", props={"item": "milk"}, flush_update=True)
    Notes("n2").close()
    listed = [(i.instance, i.version) for i in admin.instances(app, "Notes") if i.instance != "docs"]
    assert listed == [("n1", 2), ("n2", 1)]  # "docs" may exist: the schedule's instance
    info = admin.state(app, "Notes", "n1", values=True)
    assert info.version == 2
    keys = {k.key: k for k in info.keys}
    assert keys["items"].version == 2 and keys["items"].value == "['milk']"
    assert keys["count"].value == "1"
    assert all(k.size > 0 and k.written_at is not None for k in info.keys)
    assert admin.state(app, "Notes", "n1").keys[0].value is None  # values only when asked for
    json.dumps(info.as_dict())
    with pytest.raises(NotFoundError, match=r"no instance Notes/zz in .*; known: n1, n2"):
        admin.state(app, "Notes", "zz")
    with pytest.raises(NotFoundError, match="no component Nope"):
        admin.instances(app, "Nope")


def test_key_history_and_rollback_as_a_new_version(app: tidal.App) -> None:
    Notes = define(app)
    n = Notes("n1")
    for item in ("a", "b", "c"):
        n.run("add", props={"item": item}, flush_update=True)
    history = admin.key_history(app, "Notes", "n1", "items")
    assert [(h.version, h.value, h.current) for h in history] == [
        (4, "['a', 'b', 'c']", True),
        (3, "['a', 'b']", False),
        (2, "['a']", False),
        (1, "[]", False),
    ]
    assert n.read_state("items") == ["a", "b", "c"]  # cached in this process
    done = admin.rollback(app, "Notes", "n1", "items", version=2)
    assert (done.restored_version, done.new_version) == (2, 5)
    assert n.read_state("items") == ["a"]
    assert n.read_state("count") == 3  # other keys untouched
    # Serves see it too. (Read count first: the update this run queues may apply at any moment.)
    assert n.run("add", props={"item": "x"}, flush_update=True) == 1
    assert (n.read_state("items"), n.read_state("count")) == (["a", "x"], 4)
    assert [h.version for h in admin.key_history(app, "Notes", "n1", "items")][:3] == [6, 5, 4]
    with pytest.raises(NotFoundError, match=r"no version 9 in history of 'items'; known: 6, 5, 4"):
        admin.rollback(app, "Notes", "n1", "items", version=9)
    with pytest.raises(NotFoundError, match=r"no state key nope in Notes/n1; known: count, items"):
        admin.key_history(app, "Notes", "n1", "nope")
    n.close()


def test_rollback_refuses_when_the_state_moved_on(app: tidal.App, monkeypatch: pytest.MonkeyPatch) -> None:
    Notes = define(app)
    with Notes("n1") as n:
        n.run("add", props={"item": "a"}, flush_update=True)
        real = app.store.key_history

        def then_commit(*args, **kwargs):  # type: ignore[no-untyped-def]
            out = real(*args, **kwargs)
            n.write_state({"count": 99})  # lands between the read and the rollback's commit
            return out

        monkeypatch.setattr(app.store, "key_history", then_commit)
        with pytest.raises(VersionConflictError):
            admin.rollback(app, "Notes", "n1", "items", version=1)
        monkeypatch.undo()
        assert n.read_state("items") == ["a"] and n.read_state("count") == 99


def test_failures_retry_and_drop(app: tidal.App) -> None:
    Notes = define(app)
    with Notes("n1") as n:
        n.run("add", props={"item": "x", "fail": True})
        n.run("add", props={"item": "y", "fail": True})
        with pytest.raises(UpdateFailedError):
            n.flush_update("add")
        first, second = sorted(admin.failures(app, "Notes"), key=lambda f: f.op_id)
        assert (first.instance, first.flow) == ("n1", "add")
        waiting = admin.instance_queue(app, "Notes", "n1")
        assert waiting.pending == 0 and [f.op_id for f in waiting.failed] == [first.op_id, second.op_id]
        assert json.loads(json.dumps(waiting.as_dict()))["failed"][0]["op_id"] == first.op_id
        with pytest.raises(NotFoundError, match="no instance Notes/zz"):
            admin.instance_queue(app, "Notes", "zz")
        assert first.summary == "RuntimeError: cannot add x"
        json.dumps(first.as_dict())
        dropped = admin.drop_failed(app, "Notes", first.op_id)
        assert dropped.op_id == first.op_id
        assert [f.op_id for f in admin.failures(app, "Notes")] == [second.op_id]
        gone = rf"no failed op {first.op_id} in the failed ops of Notes; known: {second.op_id}"
        with pytest.raises(NotFoundError, match=gone):
            admin.retry_failed(app, "Notes", first.op_id)
        retried = admin.retry_failed(app, "Notes", second.op_id)
        assert retried.new_op_id > second.op_id and retried.instance == "n1"
        with pytest.raises(UpdateFailedError):  # it fails again, under its new id
            n.flush_update("add")
        (again,) = admin.failures(app, "Notes")
        assert again.op_id == retried.new_op_id
        queue = {q.component: q for q in admin.queues(app)}
        assert queue["Notes"].failed == 1 and queue["Notes"].pending == 0


def test_runs_tail_and_stats(app: tidal.App) -> None:
    Notes = define(app)
    with Notes("n1") as n, Notes("n2") as m:
        n.run("add", props={"item": "a"}, flush_update=True)
        m.run("add", props={"item": "b", "fail": True})
        with pytest.raises(UpdateFailedError):
            m.flush_update("add")
        app.feedback(n.last_run_id, score=1.0)  # type: ignore[arg-type]
    latest = admin.runs(app, limit=10)
    assert {(r.instance, r.kind, r.status) for r in latest} == {
        ("n1", "serve", "ok"),
        ("n1", "update", "ok"),
        ("n2", "serve", "ok"),
        ("n2", "update", "error"),
    }
    assert [r.instance for r in admin.runs(app, status="error")] == ["n2"]
    assert {r.kind for r in admin.runs(app, instance="n1")} == {"serve", "update"}
    assert len(admin.runs(app, limit=1)) == 1
    json.dumps([r.as_dict() for r in latest])
    with pytest.raises(ValueError, match="status must be one of ok, error, discarded"):
        admin.runs(app, status="bad")
    stats = {(s.flow, s.kind): s for s in admin.run_stats(app, component="Notes", window=timedelta(minutes=5))}
    serve, update = stats[("add", "serve")], stats[("add", "update")]
    assert (serve.count, serve.errors, serve.feedback_count, serve.feedback_mean_score) == (2, 0, 1, 1.0)
    assert (update.count, update.errors) == (2, 1)
    assert serve.latency_p50_ms is not None and serve.latency_p50_ms <= serve.latency_p99_ms  # type: ignore[operator]


def test_runs_log_health_names_runs_the_database_refused(app: tidal.App, tmp_path: Path) -> None:
    Notes = define(app)
    with Notes("n1") as n:
        n.run("add", props={"item": "a"}, flush_update=True)
    assert app.runlog is not None
    app.runlog.flush()
    health = admin.runs_log_health(app)
    assert health is not None and health["healthy"] is True and health["warning"] is None
    assert (health["written"], health["failed"], health["pending"]) == (2, 0, 0)
    # The database itself refuses the runs rows of one instance: stored
    # neither in full nor reduced, so counted as failed, with the error kept.
    with app.db.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_runs BEFORE INSERT ON runs WHEN NEW.instance = 'bad' "
            "BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
        )
    with Notes("bad") as b:
        b.run("add", props={"item": "x"}, flush_update=True)
    app.runlog.flush()
    health = admin.runs_log_health(app)
    assert health is not None and health["failed"] == 2 and health["pending"] == 0
    assert health["warning"] is not None and health["warning"].startswith("2 runs could not be stored; last error at ")
    assert "refused for the test" in health["warning"] and "refused for the test" in health["last_error"]
    json.dumps(health)
    # A writer that has stopped, or is behind, is named as such.
    stuck = {**health, "alive": False, "healthy": False, "pending": 5, "failed": 0}
    assert (admin.runs_log_warning(stuck) or "").startswith("the writer is not running (5 runs pending); last error")
    behind = {**health, "healthy": False, "behind_s": 75.2, "failed": 0, "last_error": None}
    assert admin.runs_log_warning(behind) == "the writer is 75 s behind (0 runs pending)"
    quiet = tidal.App("quiet", store="memory://", home=tmp_path / "quiet", secret_key="k" * 32, runs_log=False)
    try:
        assert admin.runs_log_health(quiet) is None
    finally:
        quiet.close()


def test_run_timeline_buckets_throughput_errors_and_lag(app: tidal.App) -> None:
    from tidal.relations.builtin import Run

    now = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)

    def run(kind: str, minutes_ago: float, status: str = "ok", waited: float | None = None) -> Run:
        started = now - timedelta(minutes=minutes_ago)
        return Run(
            component="Notes", instance="n", flow="add", kind=kind, status=status,
            latency_ms=10.0, waited_ms=waited, started_at=started,
        )  # fmt: skip

    app.insert_many(
        [
            run("serve", 0),
            run("update", 0, waited=90.0),
            run("update", 0.2, waited=190.0),
            run("update", 2, status="error", waited=5.0),
            run("serve", 90),  # outside the window
        ]
    )
    other = Run(component="Other", instance="o", flow="f", kind="serve", status="ok", started_at=now)
    app.insert(other)
    timeline = admin.run_timeline(app, window=timedelta(minutes=5), now=now)
    assert len(timeline) == 6  # 11:55 .. 12:00, aligned to the minute
    assert timeline[0].start == "2030-01-01T11:55:00+00:00" and timeline[-1].start == "2030-01-01T12:00:00+00:00"
    last, two_ago = timeline[-1], timeline[-3]
    assert (last.serves, last.updates, last.errors) == (2, 2, 0)
    assert (last.lag_p50_ms, last.lag_max_ms) == (150.0, 200.0)
    assert (two_ago.serves, two_ago.updates, two_ago.errors, two_ago.lag_p50_ms) == (0, 1, 1, 15.0)
    assert [b.updates for b in timeline[:3]] == [0, 0, 0] and timeline[0].lag_p50_ms is None
    only_notes = admin.run_timeline(app, components=["Notes"], window=timedelta(minutes=5), now=now)
    assert only_notes[-1].serves == 1
    json.dumps([b.as_dict() for b in timeline])
    with pytest.raises(ValueError, match="at most 1440"):
        admin.run_timeline(app, window=timedelta(days=2))
    with pytest.raises(ValueError, match="bucket must be positive"):
        admin.run_timeline(app, bucket=timedelta(0))


def test_sql_binds_parameters(app: tidal.App) -> None:
    app.insert(Doc(text="hello"))
    got = admin.sql(app, "SELECT text FROM doc WHERE text = :t", {"t": "hello"})
    assert got.as_dict() == {"columns": ["text"], "rows": [["hello"]]}


@pytest.mark.parametrize("url", ["redis_url", "redis_cluster_url"])
def test_admin_on_redis(url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store = request.getfixturevalue(url)  # one server, or a real Redis Cluster
    app = tidal.App("ops", store=store, home=tmp_path / "home", settings=Settings(history_versions=2))
    try:
        Notes = define(app)
        with Notes("r1") as n:
            for item in ("a", "b", "c", "d"):
                n.run("add", props={"item": item}, flush_update=True)
            assert [h.version for h in admin.key_history(app, "Notes", "r1", "items")] == [5, 4, 3]
            admin.rollback(app, "Notes", "r1", "items", version=3)
            assert n.read_state("items") == ["a", "b"]
            n.run("add", props={"item": "z", "fail": True})
            with pytest.raises(UpdateFailedError):
                n.flush_update("add")
            (failed,) = admin.failures(app, "Notes")
            retried = admin.retry_failed(app, "Notes", failed.op_id)
            with pytest.raises(UpdateFailedError):
                n.flush_update("add")
            assert [f.op_id for f in admin.failures(app, "Notes", instance="r1")] == [retried.new_op_id]
            state = admin.state(app, "Notes", "r1")
            assert {k.key for k in state.keys} == {"items", "count"} and state.version == 6
    finally:
        app.close()


def test_admin_exports_every_verb_it_lists() -> None:
    from tidal.admin import backlog, catalog, common, query, runs_log, state_keys

    assert all(hasattr(admin, name) for name in admin.__all__)
    assert admin.state is state_keys.state and admin.sql is query.sql and admin.queues is backlog.queues
    assert admin.components is catalog.components and admin.runs is runs_log.runs
    assert callable(common.check_instance)
