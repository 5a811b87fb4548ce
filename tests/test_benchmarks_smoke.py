"""The benchmarks still run: ``python -m benchmarks.run_all --quick --store memory``
exits 0, reports every workload, and writes well-formed JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("serve", "update", "large_state", "lifecycle", "relations", "runs_log")


@pytest.mark.slow
def test_run_all_quick_memory(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--quick", "--store", "memory", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    for name in WORKLOADS:
        assert f"== {name}:" in proc.stdout, f"workload {name} missing from:\n{proc.stdout}"
    data = json.loads(out.read_text())
    assert data["failed"] == []
    assert data["stores"] == ["memory"]
    reported = {row["workload"] for row in data["rows"]}
    assert reported == set(WORKLOADS)
    for row in data["rows"]:
        if row["metric"] in ("miss_p50", "e2e", "write_p50", "p50", "one_trig", "lag200_p50", "miss_p50_on", "e2e_on"):
            assert row["values"]["memory"] > 0, row


@pytest.mark.slow
def test_instances_memory_quick() -> None:
    """``python -m benchmarks.instances_memory --quick``: the memory table and
    the cold / hot timings print, and every served value was the instance's own."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.instances_memory", "--quick", "--instances", "600", "--bound", "100",
         "--samples", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    for line in (
        "snapshot_instances=100, 600 instances",
        "       100 ",
        "       600 ",
        "cold instance",
        "hot instance",
    ):
        assert line in out, f"{line!r} missing from:\n{out}"
    assert "every served value was its own" in out


@pytest.mark.slow
def test_rate_limit_quick() -> None:
    """``python -m benchmarks.rate_limit --quick`` on SQLite and memory: four
    takers keep to the bucket's budget (a run that grants more fails)."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.rate_limit", "--quick", "--stores", "sqlite", "memory", "--calls", "100"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    for line in ("sqlite        hammer:", "sqlite        paced :", "memory        paced :", "refused take"):
        assert line in proc.stdout, f"{line!r} missing from:\n{proc.stdout}"
