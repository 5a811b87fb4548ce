"""Cost of experiments and guardrails on the serve path (standalone:
``python -m benchmarks.guards``).

Serve-only flows of a memory:// app with the runs log on and caching off
(every call runs its op), a short text answer; per case the p50 of
``inst.run`` over many calls, against the same op without the feature:

* ``plain``: no Variants, no guard (the baseline);
* ``variants``: a Variants param read in the op and recorded on the run;
* ``max_length``: one output guard that finds nothing;
* ``pii out``: the PII guard on the result (four regexes over ~60 chars);
* ``pii in+out``: the PII guard on the props and the result;
* ``redact``: the PII guard redacting an email in every result (a
  ``guard_violations`` row per run).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import tidal
from tidal.evals import guards

ANSWER = "Use a with statement to open files; it closes them for you. See [with]."


def _p50(fn: Callable[[int], object], n: int) -> float:
    for i in range(n // 10):
        fn(i)
    samples = []
    for i in range(n):
        t = time.perf_counter_ns()
        fn(i)
        samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples) / 1000.0


def main(n: int = 20_000) -> dict[str, float]:
    app = tidal.App("bench-guards", "memory://")
    plain = app.component("Plain", cache_ttl=0)
    exp = app.component("Exp", params={"style": tidal.Variants(a=" A", b=" B")}, cache_ttl=0)
    guarded = app.component("Guarded", cache_ttl=0)

    @plain.serve("ask")
    def ask_plain(state: Any, props: Any) -> str:
        return ANSWER

    @exp.serve("ask")
    def ask_exp(state: Any, props: Any) -> str:
        return ANSWER + exp.params["style"]

    @guarded.serve("len", guard=[guards.max_length(1000)])
    def ask_len(state: Any, props: Any) -> str:
        return ANSWER

    @guarded.serve("pii_out", guard=[guards.pii(on="output")])
    def ask_pii(state: Any, props: Any) -> str:
        return ANSWER

    @guarded.serve("pii_both", guard=[guards.pii(on="both")])
    def ask_pii_both(state: Any, props: Any) -> str:
        return ANSWER

    @guarded.serve("redact", guard=[guards.pii(on="output", action="redact")])
    def ask_redact(state: Any, props: Any) -> str:
        return ANSWER + " Mail bob@example.com."

    p, e, g = plain("u1"), exp("u1"), guarded("u1")
    cases: dict[str, Callable[[int], object]] = {
        "plain": lambda i: p.run("ask", {"q": "how do I open a file?", "i": i}),
        "variants": lambda i: e.run("ask", {"q": "how do I open a file?", "i": i}),
        "max_length": lambda i: g.run("len", {"q": "how do I open a file?", "i": i}),
        "pii out": lambda i: g.run("pii_out", {"q": "how do I open a file?", "i": i}),
        "pii in+out": lambda i: g.run("pii_both", {"q": "how do I open a file?", "i": i}),
        "redact": lambda i: g.run("redact", {"q": "how do I open a file?", "i": i}),
    }
    out: dict[str, float] = {}
    for _ in range(3):  # interleaved rounds; the best p50 of each case
        for name, fn in cases.items():
            out[name] = min(out.get(name, float("inf")), _p50(fn, n))
    app.close()
    base = out["plain"]
    print(f"{'case':<12} {'p50 us':>8} {'over plain':>11}")
    for name, value in out.items():
        print(f"{name:<12} {value:>8.2f} {value - base:>+10.2f}")
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
