"""The side-by-side table of ``python -m benchmarks.motion_compare``: which
metrics each workload reports, their targets against Motion, rows built from
the systems' summaries (combined over rounds), and the table printed with rich
or written as Markdown."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import common

LABELS = {
    "motion": "Motion",
    "tidal-sqlite": "Tidal sqlite",
    "tidal-redis": "Tidal redis",
    "tidal-redis-cluster": "Tidal redis cluster",
}
WORKLOADS = ("serve", "update", "update_process", "large_state", "lifecycle", "multiproc", "forked")

# -- rows -------------------------------------------------------------------


@dataclass
class CmpMetric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = False
    target: float | None = None
    """Required times-better-than-Motion factor, or (for ``exact``) the exact value Tidal must report."""
    exact: bool = False
    """A count that must equal ``target`` (e.g. 0 lost updates), not a ratio."""
    ratio: bool = True
    """Whether a times-better-than-Motion ratio means anything for this metric."""


METRICS: dict[str, list[CmpMetric]] = {
    "serve": [
        CmpMetric("miss_p50", "cache miss p50", "us", target=5),
        CmpMetric("miss_p99", "cache miss p99", "us"),
        CmpMetric("hit_p50", "cache hit p50", "us", target=5),
        CmpMetric("hit_p99", "cache hit p99", "us"),
    ],
    "update": [
        CmpMetric("e2e", "end to end: N runs + flush_update", "updates/s", higher_is_better=True, target=5),
        CmpMetric("run_rate", "run calls/s while applying", "calls/s", higher_is_better=True),
        CmpMetric("lost", "updates missing from the counter (worst trial)", "updates", target=0, exact=True),
    ],
    "update_process": [
        CmpMetric("e2e", "end to end: N runs + flush_update", "updates/s", higher_is_better=True, target=5),
        CmpMetric("run_rate", "run calls/s while applying", "calls/s", higher_is_better=True),
        CmpMetric("lost", "updates missing from the counter (worst trial)", "updates", target=0, exact=True),
    ],
    "large_state": [
        CmpMetric("write_p50", "write_state({'n'}) p50", "ms", target=50),
        CmpMetric("write_p99", "write_state({'n'}) p99", "ms"),
        CmpMetric("update_p50", "run + flush_update, update sets n, p50", "ms", target=50),
        CmpMetric("update_p99", "run + flush_update, update sets n, p99", "ms"),
        CmpMetric("update_lost", "run + flush_update: updates missing", "updates", target=0, exact=True),
        CmpMetric("xproc_first", "2nd process: first serve (loads big)", "ms"),
        CmpMetric("xproc_read_p50", "2nd process: read_state('n') after commit, p50", "ms"),
        CmpMetric("xproc_serve_p50", "2nd process: serve (new props) after commit, p50", "ms"),
        CmpMetric("xproc_stale", "2nd process: stale reads", "reads", target=0, exact=True),
    ],
    "lifecycle": [
        CmpMetric("mean", "create + serve + shutdown, mean (ms per instance)", "ms", target=20),
        CmpMetric("p50", "create + serve + shutdown, p50", "ms"),
        CmpMetric("p99", "create + serve + shutdown, p99", "ms"),
    ],
    "multiproc": [
        CmpMetric("expected", "expected final count, all counters", "updates", ratio=False),
        CmpMetric("observed", "observed final count, all counters", "updates", ratio=False),
        CmpMetric("lost", "lost updates", "updates", target=0, exact=True),
        CmpMetric("rate", "updates/s, all processes (go to last flush_update)", "updates/s", higher_is_better=True),
        CmpMetric("rate_exit", "updates/s, all processes (go to last exit)", "updates/s", higher_is_better=True),
    ],
    "forked": [
        CmpMetric("wall", "first fork to last child's exit, median of trials", "ms", target=5),
        CmpMetric("first", "the same, first trial (the parent's first fork)", "ms"),
        CmpMetric("lost", "updates missing from the counter (worst trial)", "updates", target=0, exact=True),
    ],
}

TITLES = {
    "serve": "serve latency (one instance, serve-only flow)",
    "update": "update throughput (one instance, counter)",
    "update_process": "update throughput, update_task_type='process' (one instance, counter)",
    "large_state": "small commit next to a large state",
    "lifecycle": "instance lifecycle",
    "multiproc": "multi-process counter",
    "forked": "children forked from a parent that used the library, updating one instance",
}


@dataclass
class CmpRow:
    workload: str
    metric: str
    label: str
    unit: str
    higher_is_better: bool
    target: float | None
    exact: bool
    ratio: bool
    values: dict[str, float | None]
    met: dict[str, bool] = field(default_factory=dict)

    def vs_motion(self, system: str) -> float | None:
        """How many times better than Motion (>1: better)."""
        if self.exact or not self.ratio:
            return None
        mine, motion = self.values.get(system), self.values.get("motion")
        if mine is None or motion is None or mine == 0 or motion == 0:
            return None
        return mine / motion if self.higher_is_better else motion / mine


def build_rows(summaries: dict[str, dict[str, dict[str, float]]], systems: Sequence[str]) -> list[CmpRow]:
    rows = []
    for workload in WORKLOADS:
        if not any(workload in summaries.get(s, {}) for s in systems):
            continue
        for m in METRICS[workload]:
            values = {s: summaries.get(s, {}).get(workload, {}).get(m.key) for s in systems}
            row = CmpRow(workload, m.key, m.label, m.unit, m.higher_is_better, m.target, m.exact, m.ratio, values)
            if m.target is not None:
                for s in systems:
                    if s == "motion" or values.get(s) is None:
                        continue
                    if m.exact:
                        row.met[s] = values[s] == m.target
                    else:
                        ratio = row.vs_motion(s)
                        if ratio is not None:
                            row.met[s] = ratio >= m.target
            rows.append(row)
    return rows


def combine_rounds(workload: str, rounds: Sequence[dict[str, float]]) -> dict[str, float]:
    """One summary from the rounds' summaries of a workload on one system:
    the median of each metric, but for exact counts (lost updates) the one
    farthest from its target, so that no bad round is hidden."""
    exact = {m.key: m.target or 0.0 for m in METRICS[workload] if m.exact}
    out: dict[str, float] = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds if key in r]
        if key in exact:
            out[key] = max(values, key=lambda v: abs(v - exact[key]))
        else:
            out[key] = common.median(values)
    return out


def round_ratio_notes(rows: Sequence[CmpRow], by_round: dict[str, dict[str, list[dict[str, float]]]]) -> list[str]:
    """For each metric with a times-better target: Tidal's ratio to Motion in
    each round (rounds pair up in the order they ran)."""
    notes = []
    motion = by_round.get("motion", {})
    for row in rows:
        if row.target is None or row.exact or not row.ratio or row.workload not in motion:
            continue
        for system, per in by_round.items():
            if system == "motion" or row.workload not in per:
                continue
            ratios = []
            for theirs, ours in zip(motion[row.workload], per[row.workload], strict=False):
                a, b = theirs.get(row.metric), ours.get(row.metric)
                if a and b:
                    ratios.append(b / a if row.higher_is_better else a / b)
            if ratios:
                shown = ", ".join(f"{r:.1f}x" for r in ratios)
                notes.append(f"{row.workload} {row.metric}, {LABELS[system]} vs Motion by round: {shown}")
    return notes


# -- output ---------------------------------------------------------------------


def _ratio_text(row: CmpRow, system: str) -> str:
    ratio = row.vs_motion(system)
    if ratio is None:
        return ""
    return f"{common.fmt_ratio(ratio)} {'better' if ratio >= 1 else 'worse'}"


def _target_text(row: CmpRow) -> str:
    if row.target is None:
        return ""
    if row.exact:
        return f"= {row.target:g}"
    return f">= {row.target:g}x vs Motion"


def _value_text(row: CmpRow, system: str, failed: dict[str, dict[str, str]]) -> str:
    if row.workload in failed.get(system, {}):
        return failed[system][row.workload]
    value = row.values.get(system)
    if value is None:
        return "n/a"
    if row.unit in ("updates", "reads") and float(value).is_integer():
        return f"{int(value):,}"
    return common.fmt(value)


def columns(systems: Sequence[str]) -> list[str]:
    tidal = [s for s in systems if s != "motion"]
    cols = ["workload", "metric", "unit", *(LABELS[s] for s in systems)]
    cols += [f"{LABELS[s]} vs Motion" for s in tidal] if "motion" in systems else []
    cols += ["target", f"met ({' / '.join(LABELS[s] for s in tidal)})"]
    return cols


def cells(row: CmpRow, systems: Sequence[str], failed: dict[str, dict[str, str]]) -> list[str]:
    tidal = [s for s in systems if s != "motion"]
    out = [row.workload, row.label, row.unit, *(_value_text(row, s, failed) for s in systems)]
    if "motion" in systems:
        out += [_ratio_text(row, s) for s in tidal]
    met = " / ".join(("yes" if row.met[s] else "MISSED") if s in row.met else "-" for s in tidal)
    out += [_target_text(row), met if row.target is not None else ""]
    return out


def print_table(rows: Sequence[CmpRow], systems: Sequence[str], failed: dict[str, dict[str, str]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 220)
    table = Table(title=title)
    for i, col in enumerate(columns(systems)):
        table.add_column(col, justify="left" if i < 3 or col.startswith(("target", "met")) else "right")
    last = None
    for row in rows:
        c = cells(row, systems, failed)
        if row.workload == last:
            c[0] = ""
        elif last is not None:
            table.add_section()
        last = row.workload
        style = "red" if row.met and not all(row.met.values()) else None
        table.add_row(*c, style=style)
    console.print(table)


def markdown_table(rows: Sequence[CmpRow], systems: Sequence[str], failed: dict[str, dict[str, str]]) -> str:
    cols = columns(systems)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(row, systems, failed)) + " |")
    return "\n".join(lines) + "\n"
