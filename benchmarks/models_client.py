"""What Tidal's model client adds to a call, and what a cache hit costs.

    python -m benchmarks.models_client [--calls 300] [--rounds 5] [--json FILE]

* overhead: the same chat request (temperature 0.7, so never cached) through
  the bare ``openai`` client and through ``tidal.models`` with an embedded
  app (SQLite store, runs log on: every call buffers a ``model_calls`` row),
  against the stand-in server (``tidal models serve --stand-in``, its own
  process). Rounds alternate which goes first; the figure is the difference
  of the medians, and their ratio.
* cache hits: a deterministic call (temperature 0) asked again: served from
  the in-process copy, and from the app's store (the in-process copy
  dropped before each call, as another process would find it).

Checks: every answer has text; the cached answers equal the first; the app
holds one ``model_calls`` row per Tidal call.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

import tidal
from tidal import models

from .common import check

MESSAGES = [
    {"role": "system", "content": "You answer questions about Python in one sentence."},
    {"role": "user", "content": "What does the nonlocal statement do?"},
]


def start_standin() -> tuple[subprocess.Popen[str], str]:
    """The stand-in server in its own process, and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidal", "models", "serve", "--stand-in", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = next((w for w in line.split() if w.startswith("http")), None)
    if url is None:
        proc.kill()
        raise RuntimeError(f"the stand-in did not say where it listens: {line!r}")
    return proc, url


def timed(fn: Any, n: int) -> list[float]:
    """``n`` calls of ``fn``, each timed (seconds)."""
    gc.collect()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per client per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hits", type=int, default=5000, help="cache hits timed")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    proc, url = start_standin()
    home = tempfile.mkdtemp(prefix="tidal-bench-models-")
    app = tidal.App("bench-models", store=f"sqlite:///{home}/store.db")
    try:
        bare = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        llm = models.connect(url + "#stand-in", app=app)

        def bare_call() -> None:
            r = bare.chat.completions.create(model="stand-in", messages=MESSAGES, temperature=0.7, max_tokens=16)  # type: ignore[arg-type]
            check(bool(r.choices[0].message.content), "bare client: empty answer")

        def tidal_call() -> None:
            check(bool(llm.chat(MESSAGES, temperature=0.7, max_tokens=16).text), "tidal client: empty answer")

        for fn in (bare_call, tidal_call):  # warm both connections
            timed(fn, 20)
        bare_t: list[float] = []
        tidal_t: list[float] = []
        for r in range(args.rounds):
            order = [(bare_call, bare_t), (tidal_call, tidal_t)]
            for fn, sink in order if r % 2 == 0 else reversed(order):
                sink.extend(timed(fn, args.calls))
        app.flush_runs()
        rows = app.sql("SELECT COUNT(*) AS n FROM model_calls").scalar()
        check(rows == 20 + args.rounds * args.calls, f"expected one model_calls row per call, found {rows}")

        first = llm.chat(MESSAGES, temperature=0, max_tokens=16)

        def hit() -> None:
            check(llm.chat(MESSAGES, temperature=0, max_tokens=16).cache_hit == "exact", "not a cache hit")

        local_hits = timed(hit, args.hits)
        assert llm.cache is not None
        cache = llm.cache

        def store_hit() -> None:
            cache.clear_local()
            r = llm.chat(MESSAGES, temperature=0, max_tokens=16)
            check(r.cache_hit == "exact" and r.text == first.text, "store cache: wrong answer")

        store_hits = timed(store_hit, max(200, args.hits // 5))
    finally:
        app.close()
        proc.terminate()
        proc.wait(10)

    med_bare, med_tidal = statistics.median(bare_t), statistics.median(tidal_t)
    figures = {
        "bare_p50_us": med_bare * 1e6,
        "tidal_p50_us": med_tidal * 1e6,
        "added_p50_us": (med_tidal - med_bare) * 1e6,
        "ratio": med_tidal / med_bare,
        "cache_hit_local_p50_us": statistics.median(local_hits) * 1e6,
        "cache_hit_store_p50_us": statistics.median(store_hits) * 1e6,
        "calls": args.calls * args.rounds,
    }
    print(f"chat call p50: bare openai {figures['bare_p50_us']:.0f} µs, tidal.models {figures['tidal_p50_us']:.0f} µs")
    print(f"  added by Tidal: {figures['added_p50_us']:+.0f} µs p50 (ratio {figures['ratio']:.3f}; target < 1000 µs)")
    print(
        f"cache hit p50: in-process {figures['cache_hit_local_p50_us']:.1f} µs, "
        f"from the SQLite store {figures['cache_hit_store_p50_us']:.1f} µs (target < 100 µs)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
