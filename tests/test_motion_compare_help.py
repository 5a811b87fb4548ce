"""``python -m benchmarks.motion_compare`` stays importable and documented
without Motion installed (CI does not install Motion); its table code works on
made-up numbers. The side-by-side run itself is done by hand (docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_help_runs_without_motion() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.motion_compare", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for option in ("--quick", "--json", "--markdown", "--systems", "--rounds"):
        assert option in proc.stdout


def test_rows_compare_with_motion() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks import motion_compare as mc

    summaries = {
        "motion": {"update": {"e2e": 1_000.0, "run_rate": 5_000.0, "lost": 3}},
        "tidal-sqlite": {"update": {"e2e": 10_000.0, "run_rate": 4_000.0, "lost": 0}},
    }
    rows = {r.metric: r for r in mc.build_rows(summaries, ["motion", "tidal-sqlite"])}
    assert rows["e2e"].vs_motion("tidal-sqlite") == 10
    assert rows["e2e"].met == {"tidal-sqlite": True}
    assert rows["lost"].vs_motion("tidal-sqlite") is None
    assert rows["lost"].met == {"tidal-sqlite": True}
    table = mc.markdown_table(list(rows.values()), ["motion", "tidal-sqlite"], {"motion": {}, "tidal-sqlite": {}})
    assert "| update | end to end: N runs + flush_update | updates/s | 1,000 | 10,000 | 10x better |" in table


def test_rounds_combine_to_medians_and_keep_the_worst_exact_count() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks import motion_compare as mc

    motion = [{"e2e": 1_000.0, "run_rate": 5_000.0, "lost": 0}, {"e2e": 500.0, "run_rate": 4_000.0, "lost": 0}]
    tidal = [
        {"e2e": 6_000.0, "run_rate": 6_000.0, "lost": 0},
        {"e2e": 2_000.0, "run_rate": 2_000.0, "lost": 2},
        {"e2e": 5_000.0, "run_rate": 5_000.0, "lost": 0},
    ]
    combined = mc.combine_rounds("update", tidal)
    assert combined["e2e"] == 5_000 and combined["lost"] == 2  # a lost update in any round shows
    by_round = {"motion": {"update": motion}, "tidal-redis": {"update": tidal}}
    summaries = {s: {"update": mc.combine_rounds("update", r["update"])} for s, r in by_round.items()}
    rows = mc.build_rows(summaries, ["motion", "tidal-redis"])
    notes = mc.round_ratio_notes(rows, by_round)
    assert notes == ["update e2e, Tidal redis vs Motion by round: 6.0x, 4.0x"]
