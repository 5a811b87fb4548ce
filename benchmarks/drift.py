"""Drift and refit on the digits stream (examples/digits_drift.py): the
classifier's accuracy over the stream with no monitor, with monitors
(ADWIN, Page-Hinkley, KS windows over 1/0 correctness), and with an oracle
that is told the shift, so it refits on the very first label of the new
regime (the ``At`` detector, same refit, same follow-ups, same held-out
check, same data).

Figures per run: accuracy before the shift, over the 200 digits after it,
and from 200 digits after it to the end; labels from the shift to the
detection; promoted refits; and the gap to the oracle after 200 digits
(target: within 2 points). Each seed is another order of the digits.

    python -m benchmarks.drift [--n 1200] [--seeds 7 8 9] [--detectors adwin page_hinkley ks]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import tidal
from examples import digits_drift as digits
from tidal.evals.drift import At, Detector


def one(data: digits.Stream, detector: str | Detector | None) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="tidal-bench-drift-"))
    app = tidal.App("digits", store=f"sqlite:///{home}/store.db", home=home)
    try:
        Digits = digits.classifier(app, data)
        monitor = digits.monitored(Digits, detector) if detector is not None else None
        began = time.perf_counter()
        right = digits.serve(app, Digits, data, monitor)
        seconds = time.perf_counter() - began
        s = data.shift_at
        events = monitor.events(digits.INSTANCE) if monitor is not None else []
        first = next((e for e in events if e.trigger == "drift"), None)
        return {
            "before": digits.accuracy(right[:s]),
            "first_200": digits.accuracy(right[s : s + 200]),
            "after_200": digits.accuracy(right[s + 200 :]),
            "overall": digits.accuracy(right),
            "delay": None if first is None else first.labels_seen - s,
            "false_alarms": sum(e.trigger == "drift" and e.labels_seen <= s for e in events),
            "promoted": sum(e.outcome == "promoted" for e in events),
            "rejected": sum(e.outcome == "rejected" for e in events),
            "seconds": seconds,
        }
    finally:
        app.close()


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:5.1f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1200, help="digits in the stream (the shift is halfway)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--detectors", nargs="+", default=["adwin", "page_hinkley", "ks"])
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {}
    for seed in args.seeds:
        data = digits.stream(args.n, seed=seed)
        runs: dict[str, str | Detector | None] = {"none": None, "oracle": At(data.shift_at + 1)}
        runs.update({d: d for d in args.detectors})
        for label, det in runs.items():
            results.setdefault(label, []).append(one(data, det))

    def mean(label: str, key: str) -> float | None:
        values = [r[key] for r in results[label] if r[key] is not None]
        return sum(values) / len(values) if values else None

    print(f"digits stream: n={args.n}, shift halfway (inverted pixels), labels 10 predictions late, seeds {args.seeds}")
    print(
        f"{'monitor':14s} {'before':>7s} {'0-200':>7s} {'200-end':>8s} {'overall':>8s} {'delay':>6s} "
        f"{'gap':>6s} {'promoted':>8s} {'rejected':>8s} {'false':>6s} {'s/run':>6s}"
    )
    oracle = mean("oracle", "after_200") or 0.0
    summary: dict[str, Any] = {}
    for label in results:
        after = mean(label, "after_200") or 0.0
        gap = 100 * (oracle - after)
        delay = mean(label, "delay")
        summary[label] = {k: mean(label, k) for k in results[label][0]} | {"gap_points": gap}
        print(
            f"{label:14s} {pct(mean(label, 'before')):>7s} {pct(mean(label, 'first_200')):>7s} "
            f"{pct(after):>8s} {pct(mean(label, 'overall')):>8s} {'n/a' if delay is None else f'{delay:.0f}':>6s} "
            f"{gap:6.1f} {mean(label, 'promoted') or 0:8.1f} {mean(label, 'rejected') or 0:8.1f} "
            f"{mean(label, 'false_alarms') or 0:6.1f} {mean(label, 'seconds') or 0:6.1f}"
        )
    return summary


if __name__ == "__main__":
    main()
