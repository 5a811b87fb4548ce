"""Schedules: ``@C.update(every=...)`` and ``@C.update(cron=...)``.

Ticks are aligned, each tick is queued once however many schedulers (threads
or processes) see it, and ticks missed while nothing ran fold into one run.
Most tests drive ``Scheduler.run_once(now)`` with a fixed clock and run the
queued ops with ``Executor(app).drain()``; the instances they read are opened
with ``disable_update_task=True`` so that no background scheduler runs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app

import tidal
from tidal import Component, DefinitionError
from tidal.core.triggers import Schedule, parse_every
from tidal.engine.executor import Executor
from tidal.engine.schedule import Scheduler

NOW = 1_600_000_123.4
"""A fixed clock, long past, so that no real tick can collide with it."""
TICK_10M = 1_599_999_600.0
"""The 10-minute tick at or before NOW."""


def at(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()  # type: ignore[misc]


def define_maint(app: tidal.App, name: str = "Maint", instance: Any = "global", **when: Any) -> Component:
    Maint = app.component(name)

    @Maint.init_state
    def setup() -> dict[str, Any]:
        return {"ticks": [], "schedule": None}

    @Maint.update(instance=instance, **when)
    def compact(state: Any, props: Any) -> dict[str, Any]:
        return {"ticks": state["ticks"] + [props["tick"]], "schedule": props["schedule"]}

    return Maint


def ticks(Maint: Component, instance: str = "global") -> list[float]:
    with Maint(instance, disable_update_task=True) as handle:
        return list(handle.read_state("ticks"))


# -- every / cron -------------------------------------------------------------


def test_every_queues_the_latest_aligned_tick_once(app: tidal.App) -> None:
    Maint = define_maint(app, every="10m")
    scheduler = Scheduler(app)
    assert scheduler.run_once(NOW) == 1
    assert scheduler.run_once(NOW) == 0
    assert scheduler.run_once(NOW + 60) == 0  # still the same tick
    assert app.store.pending("Maint", "global") == 1
    Executor(app).drain()
    assert ticks(Maint) == [TICK_10M]
    assert TICK_10M % 600 == 0 and NOW - 600 < TICK_10M <= NOW
    with Maint("global", disable_update_task=True) as handle:
        assert handle.read_state("schedule") == "every 600s"

    assert scheduler.run_once(TICK_10M + 600) == 1  # exactly on the next tick
    Executor(app).drain()
    assert ticks(Maint) == [TICK_10M, TICK_10M + 600]


def test_a_running_app_fires_its_schedule_by_itself(app: tidal.App) -> None:
    Maint = define_maint(app, every="0.2s")
    start = time.time()
    maint = Maint("global")  # starts the executor, and with it the scheduler
    deadline = time.monotonic() + 10
    while len(maint.read_state("ticks")) < 3:
        assert time.monotonic() < deadline, f"only {maint.read_state('ticks')} fired in 10 s"
        app.wait_committed(0.5)
    fired = maint.read_state("ticks")
    assert fired == sorted(set(fired))
    assert fired[0] >= start - 0.2
    for tick in fired:
        assert abs(tick / 0.2 - round(tick / 0.2)) < 1e-6, f"tick {tick} is not aligned to 0.2 s"
    assert maint.read_state("schedule") == "every 0.2s"


def test_a_cron_schedule_fires_on_its_expression(app: tidal.App) -> None:
    Maint = define_maint(app, cron="*/5 * * * *")
    scheduler = Scheduler(app)
    assert scheduler.run_once(at(2024, 1, 1, 12, 7, 30)) == 1  # queues 12:05
    assert scheduler.run_once(at(2024, 1, 1, 12, 9, 59) + 0.999) == 0
    assert scheduler.run_once(at(2024, 1, 1, 12, 10)) == 1  # exactly on 12:10
    assert scheduler.run_once(at(2024, 1, 1, 12, 10) + 0.5) == 0
    Executor(app).drain()
    assert ticks(Maint) == [at(2024, 1, 1, 12, 5), at(2024, 1, 1, 12, 10)]
    with Maint("global", disable_update_task=True) as handle:
        assert handle.read_state("schedule") == "cron '*/5 * * * *'"


@pytest.mark.parametrize(
    ("cron", "now", "last", "following"),
    [
        ("0 * * * *", at(2024, 1, 1, 12, 30), at(2024, 1, 1, 12), at(2024, 1, 1, 13)),
        ("0 * * * *", at(2024, 1, 1, 13), at(2024, 1, 1, 13), at(2024, 1, 1, 14)),
        ("0 0 1 * *", at(2024, 3, 1) - 0.5, at(2024, 2, 1), at(2024, 3, 1)),
        # A sixth field counts seconds: a tick on this very second is due.
        ("* * * * * */10", at(2024, 1, 1, 12, 0, 10), at(2024, 1, 1, 12, 0, 10), at(2024, 1, 1, 12, 0, 20)),
        ("* * * * * */10", at(2024, 1, 1, 12, 0, 10) - 0.001, at(2024, 1, 1, 12), at(2024, 1, 1, 12, 0, 10)),
    ],
)
def test_cron_ticks(cron: str, now: float, last: float, following: float) -> None:
    schedule = Schedule("f", None, cron, "global")
    assert schedule.last_tick(now) == last
    assert schedule.next_tick(now) == following


def test_missed_ticks_after_downtime_fold_into_one_run(tmp_path: Path) -> None:
    with make_app("sqlite", tmp_path) as first:
        define_maint(first, every="10m")
        assert Scheduler(first).run_once(NOW) == 1
        Executor(first).drain()
    # Nothing ran for 50 periods; then a process comes back.
    with make_app("sqlite", tmp_path) as again:
        Maint = define_maint(again, every="10m")
        scheduler = Scheduler(again)
        assert scheduler.run_once(NOW + 50 * 600) == 1
        assert scheduler.run_once(NOW + 50 * 600 + 1) == 0
        assert again.store.pending("Maint", "global") == 1
        Executor(again).drain()
        assert ticks(Maint) == [TICK_10M, TICK_10M + 50 * 600]


# -- which instances ----------------------------------------------------------


def test_star_fans_a_tick_out_to_every_instance(app: tidal.App) -> None:
    Maint = define_maint(app, every="1h", instance="*")
    scheduler = Scheduler(app)
    assert scheduler.run_once(NOW - 7200) == 0  # no instance yet
    for name in ("a", "b", "c"):
        Maint(name, disable_update_task=True).close()
    assert scheduler.run_once(NOW) == 3
    assert scheduler.run_once(NOW) == 0
    Executor(app).drain()
    hour = NOW // 3600 * 3600
    assert {name: ticks(Maint, name) for name in ("a", "b", "c")} == {"a": [hour], "b": [hour], "c": [hour]}


def test_an_instance_function_names_the_instances_and_they_are_created_on_demand(app: tidal.App) -> None:
    Maint = define_maint(app, every="1h", instance=lambda: ["x", "y"])
    assert Scheduler(app).run_once(NOW) == 2
    assert app.store.list_instances("Maint") == ["x", "y"]
    Executor(app).drain()
    assert ticks(Maint, "x") == ticks(Maint, "y") == [NOW // 3600 * 3600]


def test_a_failing_schedule_does_not_hold_back_the_others(app: tidal.App, caplog: pytest.LogCaptureFixture) -> None:
    def no_instances() -> list[str]:
        raise RuntimeError("instance list unavailable")

    define_maint(app, name="Broken", every="1h", instance=no_instances)
    Maint = define_maint(app, every="1h")
    with caplog.at_level(logging.ERROR, logger="tidal.dispatch"):
        assert Scheduler(app).run_once(NOW) == 1
    assert "schedule Broken.compact" in caplog.text
    assert "instance list unavailable" in caplog.text
    Executor(app).drain()
    assert ticks(Maint) == [NOW // 3600 * 3600]


# -- several schedulers -------------------------------------------------------


def test_two_apps_on_one_store_queue_each_tick_once(tmp_path: Path) -> None:
    apps = [make_app("sqlite", tmp_path) for _ in range(2)]
    try:
        components = [define_maint(a, every="1m") for a in apps]
        barrier = threading.Barrier(len(apps))
        queued = [0] * len(apps)

        def race(n: int) -> None:
            scheduler = Scheduler(apps[n])
            barrier.wait()
            for k in range(40):
                queued[n] += scheduler.run_once(NOW + 60 * k)

        threads = [threading.Thread(target=race, args=(n,)) for n in range(len(apps))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sum(queued) == 40
        Executor(apps[0]).drain()
        fired = ticks(components[0])
        assert sorted(fired) == [(NOW // 60 + k) * 60 for k in range(40)]
    finally:
        for a in apps:
            a.close()


SECRET = "schedules-test-secret-key-0123456789"

PROC = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import tidal
    from tidal.engine.schedule import Scheduler

    mode, db, args = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    app = tidal.App(
        "sched",
        store=f"sqlite:///{db}",
        home=db.parent / "home",
        settings=tidal.Settings(lease_seconds=2.0, sweep_seconds=0.1),
    )
    Maint = app.component("Maint")

    @Maint.init_state
    def setup():
        return {"ticks": [], "schedule": None}

    @Maint.update(every=args["every"])
    def compact(state, props):
        return {"ticks": state["ticks"] + [props["tick"]], "schedule": props["schedule"]}

    go = Path(args["go"])
    Path(f"{go}.{args['who']}").write_text("ready")
    while not go.exists():
        time.sleep(0.005)
    if mode == "race":
        scheduler = Scheduler(app)
        queued = sum(scheduler.run_once(args["base"] + 60 * k) for k in range(args["ticks"]))
        print(json.dumps({"queued": queued}), flush=True)
    elif mode == "live":
        maint = Maint("global")  # starts this process's executor and scheduler
        stop = Path(args["stop"])
        while not stop.exists():
            time.sleep(0.01)
    app.close()
    """
)


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    script = tmp_path / "sched_proc.py"
    script.write_text(PROC)
    env = {**os.environ, "TIDAL_SECRET_KEY": SECRET, "TIDAL_HOME": str(tmp_path / "home")}
    children: list[subprocess.Popen[str]] = []

    def start(mode: str, **args: Any) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, str(script), mode, str(tmp_path / "sched.db"), json.dumps(args)],
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


def start_together(
    proc: Callable[..., subprocess.Popen[str]], tmp_path: Path, mode: str, n: int, **args: Any
) -> list[subprocess.Popen[str]]:
    """Start ``n`` children and let them go at once, when all are ready."""
    go = tmp_path / "go"
    children = [proc(mode, who=str(i), go=str(go), **args) for i in range(n)]
    deadline = time.monotonic() + 30
    while not all(Path(f"{go}.{i}").exists() for i in range(n)):
        assert time.monotonic() < deadline, "children did not start"
        for child in children:
            assert child.poll() is None, child.communicate()[1]
        time.sleep(0.01)
    go.write_text("go")
    return children


def parent_app(tmp_path: Path) -> tuple[tidal.App, Component]:
    app = tidal.App(
        "sched",
        store=f"sqlite:///{tmp_path / 'sched.db'}",
        home=tmp_path / "home",
        secret_key=SECRET,
        settings=tidal.Settings(lease_seconds=2.0, sweep_seconds=0.1),
    )
    return app, define_maint(app, every="1m")


@pytest.mark.slow
def test_processes_racing_over_the_same_ticks_queue_each_once(
    proc: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    children = start_together(proc, tmp_path, "race", 3, every="1m", base=NOW, ticks=60)
    queued = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        queued.append(json.loads(out.strip().splitlines()[-1])["queued"])
    assert sum(queued) == 60, queued
    app, Maint = parent_app(tmp_path)
    with app:
        Executor(app).drain()
        assert sorted(ticks(Maint)) == [(NOW // 60 + k) * 60 for k in range(60)]


@pytest.mark.slow
def test_processes_running_one_schedule_fire_each_tick_once(
    proc: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    children = start_together(proc, tmp_path, "live", 2, every="0.25s", stop=str(stop))
    app, Maint = parent_app(tmp_path)
    with app:
        deadline = time.monotonic() + 30
        while len(ticks(Maint)) < 6:
            assert time.monotonic() < deadline, f"only {ticks(Maint)} fired"
            for child in children:
                assert child.poll() is None, child.communicate()[1]
            time.sleep(0.05)
        stop.write_text("stop")
        for child in children:
            _, err = child.communicate(timeout=30)
            assert child.returncode == 0, err
        Executor(app).drain()  # ticks queued but not yet run when the children stopped
        fired = ticks(Maint)
    assert len(fired) == len(set(fired)), f"a tick fired twice: {fired}"
    assert fired == sorted(fired)
    for tick in fired:
        assert abs(tick / 0.25 - round(tick / 0.25)) < 1e-6, f"tick {tick} is not aligned to 0.25 s"


# -- definitions --------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"every": "10 minutes"}, "every='10 minutes' is not a duration; use e.g. '30s'"),
        ({"every": "ten"}, "every='ten' is not a duration"),
        ({"every": "10"}, "every='10' is not a duration"),
        ({"every": "0s"}, "every='0s' is shorter than 10 ms"),
        ({"every": "5ms"}, "every='5ms' is shorter than 10 ms"),
        ({"every": -1}, "every=-1 is shorter than 10 ms"),
        ({"every": True}, "every= must be a duration string or seconds, got True"),
        ({"cron": "not a cron"}, "cron='not a cron' is not a valid cron expression"),
        ({"cron": "61 * * * *"}, "cron='61 \\* \\* \\* \\*' is not a valid cron expression"),
        ({"cron": "* * *"}, "cron='\\* \\* \\*' is not a valid cron expression"),
        ({"every": "1h", "cron": "0 * * * *"}, "give every= or cron=, not both"),
    ],
)
def test_bad_schedules_are_refused_naming_the_problem(when: dict[str, Any], message: str) -> None:
    C = Component("Sched")
    with pytest.raises(DefinitionError, match=f"Component Sched.update: {message}"):

        @C.update(**when)
        def tick(state: Any, props: Any) -> None:
            return None

    assert C.schedules == [] and C.update_routes == {}


@pytest.mark.parametrize(
    ("every", "seconds"),
    [("30s", 30.0), ("10m", 600.0), ("1h30m", 5400.0), ("2d", 172800.0), ("1w", 604800.0), ("250ms", 0.25), (90, 90.0)],
)
def test_every_accepts_durations(every: str | int, seconds: float) -> None:
    assert parse_every(every, "here") == seconds
    C = Component("Sched")

    @C.update(every=every)
    def tick(state: Any, props: Any) -> None:
        return None

    assert [(s.flow, s.every, s.cron, s.instance) for s in C.schedules] == [("tick", seconds, None, "global")]
