"""Timing helpers, result rows and reporting shared by every workload.

Each workload module defines ``NAME``, ``TITLE``, ``METRICS`` (what it reports,
with units, targets and the Motion reference figures), ``baseline(cfg)`` (the
plain-Python floor, measured once per run) and ``run(store, cfg)`` (the same
work through Tidal on one store). :func:`collect` turns their numbers into
:class:`Row` objects, which are printed as one table, and written as JSON or
Markdown on request.

Timing: every latency sample is one ``perf_counter_ns`` pair around one call,
after a warmup; the floor is measured the same way, so the ~50 ns the timer
itself costs is in both. The garbage collector stays on (collected once before
each timed loop): a p99 that hides GC pauses would flatter the numbers.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tidal
from tidal.config import Settings

STORES = ("sqlite", "memory")
"""Store kinds a run can cover, the default (SQLite) first."""


class BenchmarkFailure(AssertionError):
    """A workload produced a wrong result (lost update, stale read): its
    numbers mean nothing, and the run must fail."""


def check(condition: bool, message: str) -> None:
    """Fail loudly (even under ``python -O``) when a workload's result is wrong."""
    if not condition:
        raise BenchmarkFailure(message)


# -- configuration --------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """How much work each workload does. ``quick`` shrinks everything so that
    the whole suite runs in seconds (for the smoke test), at the cost of noisy
    numbers."""

    quick: bool = False

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full


# -- timing ---------------------------------------------------------------


def warmup(fn: Callable[[int], object], n: int, start: int = 0) -> int:
    """Call ``fn(i)`` for ``n`` values of ``i`` from ``start``; returns the next ``i``."""
    for i in range(start, start + n):
        fn(i)
    return start + n


def time_calls(fn: Callable[[int], object], n: int, *, start: int = 0, warm: int = 0) -> list[int]:
    """Nanoseconds of each of ``n`` calls ``fn(i)`` (``i`` counts up from
    ``start`` after ``warm`` untimed calls, so callers can make every call's
    arguments distinct)."""
    i = warmup(fn, warm, start)
    samples = [0] * n
    clock = time.perf_counter_ns
    gc.collect()
    for j in range(n):
        t0 = clock()
        fn(i + j)
        samples[j] = clock() - t0
    return samples


def time_once(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn()`` takes."""
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e9


def median(samples: Sequence[float]) -> float:
    s = sorted(samples)
    n = len(s)
    if n == 0:
        raise ValueError("no samples")
    mid = n // 2
    return float(s[mid]) if n % 2 else (s[mid - 1] + s[mid]) / 2


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``samples``."""
    s = sorted(samples)
    if not s:
        raise ValueError("no samples")
    rank = max(1, min(len(s), -(-len(s) * q // 100)))
    return float(s[int(rank) - 1])


def us(ns: float) -> float:
    return ns / 1e3


def ms(ns: float) -> float:
    return ns / 1e6


# -- apps on a fresh store --------------------------------------------------


@contextmanager
def scratch_dir(prefix: str = "tidal-bench-") -> Iterator[Path]:
    """A temporary folder, removed afterwards. ``TIDAL_BENCH_DIR`` picks the
    parent folder (the disk under test for SQLite)."""
    parent = os.environ.get("TIDAL_BENCH_DIR") or None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def store_url(kind: str, folder: Path, name: str = "bench") -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{folder.resolve() / (name + '.db')}"  # absolute: sqlite:////abs/path
    raise ValueError(f"unknown store kind {kind!r}; expected one of {STORES}")


@contextmanager
def bench_app(kind: str, name: str = "bench", *, runs_log: bool = True, **settings: Any) -> Iterator[tidal.App]:
    """A fresh App on a fresh store of ``kind`` in its own scratch folder
    (which holds the SQLite file and, as ``app.home``, the HMAC key).
    ``runs_log`` is the App's option of that name (on by default, as in an app)."""
    with scratch_dir() as folder:
        app = tidal.App(
            name,
            store=store_url(kind, folder, name),
            home=folder / "home",
            settings=Settings(**settings),
            runs_log=runs_log,
        )
        try:
            yield app
        finally:
            app.close()


def raw_sqlite(path: str | Path) -> Any:
    """A plain ``sqlite3`` connection to ``path`` with the pragmas Tidal's
    SQLite store sets (WAL, synchronous=NORMAL, wal_autocheckpoint=10000), in
    autocommit mode: the storage floor that store-bound metrics are read
    against."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=10000")
    return conn


def sqlite_path(app: tidal.App) -> Path:
    """The database file of an app on the SQLite store."""
    return Path(app.store.path)  # type: ignore[attr-defined]


# -- results --------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One number a workload reports."""

    key: str
    label: str
    unit: str
    higher_is_better: bool = False
    target: float | None = None
    motion: float | None = None
    """Motion 0.1.132 on Redis, as recorded in the project (not measured here)."""
    note: str = ""


@dataclass
class Row:
    """One metric of one workload across the stores that ran."""

    workload: str
    metric: str
    label: str
    unit: str
    higher_is_better: bool
    values: dict[str, float | None]
    floor: float | None
    target: float | None
    motion: float | None
    note: str = ""
    target_met: dict[str, bool] = field(default_factory=dict)

    def cost_vs_floor(self, store: str) -> float | None:
        """How many times the plain-Python floor's cost this store's value is
        (>1: slower than the floor)."""
        value = self.values.get(store)
        if value is None or self.floor is None or value == 0 or self.floor == 0:
            return None
        return self.floor / value if self.higher_is_better else value / self.floor

    def vs_motion(self, store: str) -> float | None:
        """How many times better than Motion's recorded figure (>1: better)."""
        value = self.values.get(store)
        if value is None or self.motion is None or value == 0:
            return None
        return value / self.motion if self.higher_is_better else self.motion / value

    def meets(self, value: float) -> bool:
        assert self.target is not None
        return value >= self.target if self.higher_is_better else value <= self.target


def collect(
    workload: str, metrics: Sequence[Metric], floor: dict[str, float], per_store: dict[str, dict[str, float]]
) -> list[Row]:
    rows = []
    for m in metrics:
        values = {store: numbers.get(m.key) for store, numbers in per_store.items()}
        row = Row(
            workload=workload,
            metric=m.key,
            label=m.label,
            unit=m.unit,
            higher_is_better=m.higher_is_better,
            values=values,
            floor=floor.get(m.key),
            target=m.target,
            motion=m.motion,
            note=m.note,
        )
        if m.target is not None:
            row.target_met = {s: row.meets(v) for s, v in values.items() if v is not None}
        rows.append(row)
    return rows


# -- formatting -----------------------------------------------------------


def fmt(value: float | None, missing: str = "n/a") -> str:
    if value is None:
        return missing
    a = abs(value)
    if a >= 100:
        text = f"{value:,.0f}"
    elif a >= 10:
        text = f"{value:.1f}"
    elif a >= 1:
        text = f"{value:.2f}"
    elif a >= 0.01:
        text = f"{value:.3f}"
    else:
        text = f"{value:.4f}"
    return text


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return ""
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 10:
        return f"{ratio:.0f}x"
    return f"{ratio:.1f}x"


def fmt_target(row: Row) -> str:
    if row.target is None:
        return ""
    sign = ">=" if row.higher_is_better else "<="
    return f"{sign} {fmt(row.target)}"


def fmt_met(row: Row, stores: Sequence[str]) -> str:
    if row.target is None:
        return ""
    return " / ".join(("yes" if row.target_met[s] else "MISSED") if s in row.target_met else "-" for s in stores)


def _columns(stores: Sequence[str]) -> list[str]:
    cols = ["workload", "metric", "unit", "floor"]
    for s in stores:
        cols += [s, "x floor"]
    cols += ["target", f"met ({' / '.join(stores)})", "Motion", f"vs Motion ({stores[0]})"]
    return cols


def _cells(row: Row, stores: Sequence[str]) -> list[str]:
    cells = [row.workload, row.label, row.unit, fmt(row.floor, "-")]
    for s in stores:
        cells += [fmt(row.values.get(s)), fmt_ratio(row.cost_vs_floor(s))]
    vs = row.vs_motion(stores[0])
    cells += [
        fmt_target(row),
        fmt_met(row, stores),
        fmt(row.motion, ""),
        "" if vs is None else f"{fmt_ratio(vs)} {'better' if vs >= 1 else 'worse'}",
    ]
    return cells


def print_table(rows: Sequence[Row], stores: Sequence[str], title: str = "Tidal benchmarks") -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=title, show_lines=False)
    for i, col in enumerate(_columns(stores)):
        table.add_column(col, justify="left" if i < 3 or col.startswith("target") else "right")
    last = None
    for row in rows:
        cells = _cells(row, stores)
        if row.workload == last:
            cells[0] = ""
        elif last is not None:
            table.add_section()
        last = row.workload
        met = row.target_met
        style = "red" if met and not all(met.values()) else None
        table.add_row(*cells, style=style)
    console.print(table)
    console.print(
        "floor: a plain Python function call doing the same work, measured in this run; "
        "x floor: cost relative to it (higher = more overhead). Motion: figures recorded earlier "
        "for Motion 0.1.132 on Redis, not measured in this run; vs Motion > 1x means Tidal is better."
    )


def markdown_table(rows: Sequence[Row], stores: Sequence[str]) -> str:
    cols = _columns(stores)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        cells = [c.replace("|", "\\|") for c in _cells(row, stores)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- machine and JSON -----------------------------------------------------


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def machine_info() -> dict[str, Any]:
    package = Path(tidal.__file__).resolve().parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, check=True, cwd=package
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 0
    import sqlite3

    return {
        "cores": cores,
        "cpu": cpu or platform.processor(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "tidal": tidal.__version__,
        "tidal_path": str(package),
        "git_commit": git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)",
        "tidal_modified": bool(git("status", "--porcelain", "--", ".")),
        "bench_dir": os.environ.get("TIDAL_BENCH_DIR") or tempfile.gettempdir(),
        "loadavg": _loadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_json(path: str | Path, rows: Sequence[Row], stores: Sequence[str], extra: dict[str, Any]) -> None:
    data = {
        **extra,
        "machine": machine_info(),
        "stores": list(stores),
        "rows": [
            {
                **asdict(row),
                "cost_vs_floor": {s: row.cost_vs_floor(s) for s in stores},
                "vs_motion": {s: row.vs_motion(s) for s in stores},
            }
            for row in rows
        ],
    }
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
