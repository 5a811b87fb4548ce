"""The operator commands (tidal run, state, runs, queue, sql, migrate) run as
real subprocesses against an app module written to a temporary folder:
their --json output and the exit codes scripts rely on (0 ok, 1 failed,
2 usage, 3 not found)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

TIDAL = [sys.executable, "-m", "tidal.cli"]

APP_FILE = textwrap.dedent(
    """
    import tidal
    from tidal import Component

    class Note(tidal.Record):
        text: str

    Tally = Component("Tally")

    @Tally.init_state
    def setup():
        return {"n": 0, "log": []}

    @Tally.serve("bump")
    def current(state, props):
        return {"n": state["n"], "k": props["k"]}

    @Tally.update("bump")
    def bump(state, props):
        if props.get("fail"):
            raise ValueError("asked to fail")
        return {"n": state["n"] + props["k"], "log": state["log"] + [props["k"]]}
    """
)

MIGRATION = textwrap.dedent(
    """
    def add_tags(state):
        if state["n"] < 0:
            raise ValueError("negative")
        return {**state, "tags": ["migrated"]}
    """
)


def tidal(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TIDAL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def ok(*args: str, cwd: Path, env: dict[str, str]) -> Any:
    """Run a --json command that must succeed; its parsed output."""
    out = tidal(*args, "--json", cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["TIDAL_HOME"] = str(tmp_path / "home")
    e["TIDAL_SECRET_KEY"] = "cli-test-secret-key-0123456789"
    e.pop("TIDAL_STORE", None)
    e.pop("TIDAL_HISTORY_VERSIONS", None)
    e["COLUMNS"] = "250"
    return e


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tallyapp.py").write_text(APP_FILE)
    (tmp_path / "migrations.py").write_text(MIGRATION)
    return tmp_path


def test_run_state_history_and_rollback(project: Path, env: dict[str, str]) -> None:
    for k in (1, 2, 3):
        got = ok("run", "tallyapp.py", "Tally", "bump", "--instance", "t1", "--props", json.dumps({"k": k}),
                 "--flush", cwd=project, env=env)  # fmt: skip
        assert got["result"] == {"n": sum(range(k)), "k": k}
        assert got["version"] == k + 1 and got["run_id"]

    shown = ok("state", "show", "Tally", "t1", cwd=project, env=env)
    assert shown["version"] == 4
    keys = {k["key"]: k for k in shown["keys"]}
    assert keys["n"]["value"] == "6" and keys["n"]["version"] == 4 and keys["n"]["size"] > 0
    assert keys["log"]["value"] == "[1, 2, 3]"

    history = ok("state", "history", "Tally", "t1", "n", cwd=project, env=env)
    assert [(v["version"], v["value"], v["current"]) for v in history["versions"]] == [
        (4, "6", True),
        (3, "3", False),
        (2, "1", False),
        (1, "0", False),
    ]
    table = tidal("state", "history", "Tally", "t1", "n", cwd=project, env=env)
    assert table.returncode == 0 and "4 (current)" in table.stdout

    back = ok("state", "rollback", "Tally", "t1", "n", "--version", "2", cwd=project, env=env)
    assert (back["restored_version"], back["new_version"]) == (2, 5)
    shown = ok("state", "show", "Tally", "t1", cwd=project, env=env)
    assert {k["key"]: k["value"] for k in shown["keys"]} == {"n": "1", "log": "[1, 2, 3]"}
    # The next update starts from the restored value.
    got = ok("run", "tallyapp.py", "Tally", "bump", "--instance", "t1", "--props", '{"k": 10}', "--flush",
             cwd=project, env=env)  # fmt: skip
    assert got["result"] == {"n": 1, "k": 10} and got["version"] == 6
    assert ok("state", "show", "Tally", "t1", cwd=project, env=env)["keys"][1]["value"] == "11"


def test_not_found_exits_3_naming_what_exists(project: Path, env: dict[str, str]) -> None:
    ok("run", "tallyapp.py", "Tally", "bump", "--instance", "t1", "--props", '{"k": 1}', "--flush",
       cwd=project, env=env)  # fmt: skip
    cases = [
        (("state", "show", "Tally", "zz"), "no instance Tally/zz", "known: t1"),
        (("state", "history", "Tally", "t1", "nope"), "no state key nope", "known: log, n"),
        (("state", "rollback", "Tally", "t1", "n", "--version", "99"), "no version 99", "known: 2, 1"),
        (("queue", "retry", "Tally", "12345"), "no failed op 12345", "there are none"),
        (("queue", "drop", "Tally", "12345"), "no failed op 12345", ""),
        (("queue", "Nope"), "no component Nope", ""),
        (("run", "tallyapp.py", "Nope", "bump", "--instance", "x"), "no component Nope", "known: Tally"),
        (("run", "tallyapp.py", "Tally", "nope", "--instance", "x"), "no flow nope", "known: bump"),
        (("migrate", "tallyapp.py", "Tally", "migrations:add_tags", "--instance", "zz"), "no instance Tally/zz", ""),
    ]
    for args, message, known in cases:
        out = tidal(*args, cwd=project, env=env)
        assert out.returncode == 3, (args, out.stdout, out.stderr)
        assert message in out.stderr and known in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_usage_errors_exit_2_naming_the_option(project: Path, env: dict[str, str]) -> None:
    cases = [
        (("run", "tallyapp.py", "Tally", "bump", "--instance", "t1", "--props", "{bad"), "--props", "JSON object"),
        (("run", "tallyapp.py", "Tally", "bump", "--instance", "t1", "--props", "[1]"), "--props", "JSON object"),
        (("run", "tallyapp.py", "Tally", "bump"), "--instance", "Missing option"),
        (("sql", "SELECT 1", "--param", "novalue"), "--param", "NAME=VALUE"),
        (("runs", "tail", "--status", "weird"), "--status", "'weird' is not one of"),
        (("runs", "tail", "--limit", "0"), "--limit", "0"),
        (("state", "rollback", "Tally", "t1", "n"), "--version", "Missing option"),
        (("migrate", "tallyapp.py", "Tally", "nocolon"), "FUNCTION", "module:function"),
    ]
    for args, option, expected in cases:
        out = tidal(*args, cwd=project, env=env)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert option in out.stderr and expected in out.stderr, (args, out.stderr)


def test_failed_ops_listed_retried_and_dropped(project: Path, env: dict[str, str]) -> None:
    failed = tidal("run", "tallyapp.py", "Tally", "bump", "--instance", "t1", "--props", '{"k": 1, "fail": true}',
                   "--flush", "--json", cwd=project, env=env)  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    report = json.loads(failed.stdout)
    assert report["result"] == {"n": 0, "k": 1} and "asked to fail" in report["failed"][0]["error"]
    tidal("run", "tallyapp.py", "Tally", "bump", "--instance", "t2", "--props", '{"k": 2, "fail": true}', "--flush",
          cwd=project, env=env)  # fmt: skip

    listed = ok("queue", "failures", "Tally", cwd=project, env=env)
    assert [(f["instance"], f["flow"]) for f in listed] == [("t2", "bump"), ("t1", "bump")]
    assert "ValueError: asked to fail" in listed[0]["error"]
    one, two = listed[1]["op_id"], listed[0]["op_id"]

    overview = tidal("queue", "Tally", "--json", cwd=project, env=env)
    assert overview.returncode == 1  # failures -> exit 1
    assert json.loads(overview.stdout)[0]["failed"] == 2

    dropped = ok("queue", "drop", "Tally", str(two), cwd=project, env=env)
    assert dropped["op_id"] == two and dropped["instance"] == "t2"
    retried = ok("queue", "retry", "Tally", str(one), cwd=project, env=env)
    assert retried["instance"] == "t1" and retried["new_op_id"] > two
    assert ok("queue", "failures", "Tally", cwd=project, env=env) == []
    instance_view = ok("queue", "Tally", "t1", cwd=project, env=env)
    assert instance_view["pending"] == 1 and instance_view["failed"] == []

    # The retried op runs again (and fails again, as its props ask).
    worked = tidal("worker", "tallyapp.py", "--burst", cwd=project, env=env)
    assert worked.returncode == 0, worked.stderr
    again = ok("queue", "failures", "Tally", "--instance", "t1", cwd=project, env=env)
    assert [f["op_id"] for f in again] == [retried["new_op_id"]]


def test_runs_tail_and_stats(project: Path, env: dict[str, str]) -> None:
    for instance, props in (("a", '{"k": 1}'), ("b", '{"k": 2, "fail": true}')):
        tidal("run", "tallyapp.py", "Tally", "bump", "--instance", instance, "--props", props, "--flush",
              cwd=project, env=env)  # fmt: skip
    rows = ok("runs", "tail", "--limit", "10", cwd=project, env=env)
    assert {(r["instance"], r["kind"], r["status"]) for r in rows} == {
        ("a", "serve", "ok"),
        ("a", "update", "ok"),
        ("b", "serve", "ok"),
        ("b", "update", "error"),
    }
    errors = ok("runs", "tail", "--status", "error", cwd=project, env=env)
    assert [(r["instance"], r["kind"]) for r in errors] == [("b", "update")]
    assert "asked to fail" in errors[0]["error"]
    assert {r["instance"] for r in ok("runs", "tail", "--instance", "a", cwd=project, env=env)} == {"a"}
    shown = ok("runs", "stats", "--component", "Tally", cwd=project, env=env)
    # This command's own runs-log writer (each process writes its own runs).
    writer = shown["runs_log"]
    assert writer["healthy"] is True and writer["warning"] is None and writer["failed"] == 0
    stats = shown["flows"]
    by_kind = {s["kind"]: s for s in stats}
    assert (by_kind["serve"]["count"], by_kind["serve"]["errors"]) == (2, 0)
    assert (by_kind["update"]["count"], by_kind["update"]["errors"]) == (2, 1)
    assert by_kind["update"]["latency_p99_ms"] >= by_kind["update"]["latency_p50_ms"]
    human = tidal("runs", "stats", cwd=project, env=env)
    assert human.returncode == 0, human.stderr
    assert "runs log (this process, pid " in human.stdout and "): healthy, " in human.stdout

    command = [*TIDAL, "runs", "tail", "--follow", "--json", "--interval", "0.1", "--limit", "1"]
    with subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, text=True) as follow:
        try:
            assert follow.stdout is not None
            first = json.loads(follow.stdout.readline())  # the latest run, printed at once
            assert first["instance"] in ("a", "b")
            tidal("run", "tallyapp.py", "Tally", "bump", "--instance", "c", "--props", '{"k": 3}',
                  cwd=project, env=env)  # fmt: skip
            assert json.loads(follow.stdout.readline())["instance"] == "c"  # a run made after the tail began
        finally:
            follow.terminate()
            follow.wait(10)


def test_sql_with_bound_parameters(project: Path, env: dict[str, str]) -> None:
    for k in (1, 2):
        tidal("run", "tallyapp.py", "Tally", "bump", "--instance", f"i{k}", "--props", json.dumps({"k": k}),
              cwd=project, env=env)  # fmt: skip
    got = ok("sql", "SELECT instance, kind FROM runs WHERE instance = :i AND kind = :kind",
             "--param", "i=i2", "--param", "kind=serve", cwd=project, env=env)  # fmt: skip
    assert got == {"columns": ["instance", "kind"], "rows": [["i2", "serve"]]}
    counted = ok("sql", "SELECT count(*) AS n FROM runs WHERE latency_ms >= :floor", "--param", "floor=0",
                 cwd=project, env=env)  # fmt: skip
    assert counted["rows"][0][0] >= 2
    bad = tidal("sql", "SELECT * FROM no_such_table", cwd=project, env=env)
    assert bad.returncode == 1 and "SQL failed" in bad.stderr and "no_such_table" in bad.stderr
    write = tidal("sql", "DELETE FROM runs", cwd=project, env=env)
    assert write.returncode == 1
    assert ok("sql", "SELECT count(*) FROM runs", cwd=project, env=env)["rows"][0][0] >= 2


def test_migrate_rewrites_every_instance(project: Path, env: dict[str, str]) -> None:
    for name in ("m1", "m2"):
        tidal("run", "tallyapp.py", "Tally", "bump", "--instance", name, "--props", '{"k": 1}', "--flush",
              cwd=project, env=env)  # fmt: skip
    results = ok("migrate", "tallyapp.py", "Tally", "migrations:add_tags", "--workers", "2", cwd=project, env=env)
    assert sorted((r["instance"], r["ok"]) for r in results) == [("m1", True), ("m2", True)]
    shown = ok("state", "show", "Tally", "m2", cwd=project, env=env)
    assert {k["key"]: k["value"] for k in shown["keys"]}["tags"] == "['migrated']"
    only = ok("migrate", "tallyapp.py", "Tally", "migrations:add_tags", "--instance", "m1", cwd=project, env=env)
    assert [r["instance"] for r in only] == ["m1"]


def test_history_setting_from_the_environment(project: Path, env: dict[str, str]) -> None:
    env = {**env, "TIDAL_HISTORY_VERSIONS": "1"}
    for k in (1, 2, 3):
        tidal("run", "tallyapp.py", "Tally", "bump", "--instance", "h", "--props", json.dumps({"k": k}), "--flush",
              cwd=project, env=env)  # fmt: skip
    versions = ok("state", "history", "Tally", "h", "n", cwd=project, env=env)["versions"]
    assert [v["version"] for v in versions] == [4, 3]
    bad = tidal("state", "show", "Tally", "h", cwd=project, env={**env, "TIDAL_HISTORY_VERSIONS": "lots"})
    assert bad.returncode == 2 and "TIDAL_HISTORY_VERSIONS must be a whole number" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_commands_on_redis(project: Path, env: dict[str, str], redis_url: str) -> None:
    store = ["--store", redis_url]
    for k in (1, 2):
        got = ok("run", "tallyapp.py", "Tally", "bump", "--instance", "r", "--props", json.dumps({"k": k}), "--flush",
                 *store, cwd=project, env=env)  # fmt: skip
        assert got["version"] == k + 1
    history = ok("state", "history", "Tally", "r", "n", *store, cwd=project, env=env)
    assert [v["version"] for v in history["versions"]] == [3, 2, 1]
    ok("state", "rollback", "Tally", "r", "n", "--version", "1", *store, cwd=project, env=env)
    shown = ok("state", "show", "Tally", "r", *store, cwd=project, env=env)
    assert shown["version"] == 4 and {k["key"]: k["value"] for k in shown["keys"]}["n"] == "0"
    missing = tidal("state", "show", "Tally", "nobody", *store, cwd=project, env=env)
    assert missing.returncode == 3 and "known: r" in missing.stderr
