"""Serve latency: ``inst.run(flow, props)`` of a serve-only flow.

* cache miss: distinct props on every call, so each call looks the result up,
  misses, runs the serve op and stores the result (the local cache is full
  and evicting after the first 10,000 calls, as in a long-running process);
* cache hit: the same props every call.

The floor is the serve function called directly on a plain dict, with a
fresh props dict each call.
"""

from __future__ import annotations

from typing import Any

from .common import Config, Metric, bench_app, check, median, percentile, time_calls, us

NAME = "serve"
TITLE = "serve latency (run of a serve-only flow)"

METRICS = [
    Metric("miss_p50", "cache miss p50", "us", target=12, motion=138),
    Metric("miss_p99", "cache miss p99", "us"),
    Metric("hit_p50", "cache hit p50", "us", target=8, motion=55),
    Metric("hit_p99", "cache hit p99", "us"),
]


def _work(state: Any, props: Any) -> int:
    return int(state["n"] + props["k"])


def _sizes(cfg: Config) -> tuple[int, int, int]:
    """(rounds, calls per round, warmup calls)."""
    return cfg.pick(5, 2), cfg.pick(20_000, 1_000), cfg.pick(2_000, 200)


def _summarise(miss: list[int], hit: list[int]) -> dict[str, float]:
    return {
        "miss_p50": us(median(miss)),
        "miss_p99": us(percentile(miss, 99)),
        "hit_p50": us(median(hit)),
        "hit_p99": us(percentile(hit, 99)),
    }


def baseline(cfg: Config) -> dict[str, float]:
    rounds, n, warm = _sizes(cfg)
    state = {"n": 1}
    miss: list[int] = []
    hit: list[int] = []
    for _ in range(rounds):
        miss += time_calls(lambda i: _work(state, {"k": i}), n, warm=warm)
        hit += time_calls(lambda i: _work(state, {"k": 1}), n, warm=warm)
    return _summarise(miss, hit)


def run(store: str, cfg: Config) -> dict[str, float]:
    rounds, n, warm = _sizes(cfg)
    with bench_app(store) as app:
        C = app.component("Serve")

        @C.init_state
        def setup() -> dict[str, int]:
            return {"n": 1}

        @C.serve("get")
        def get(state: Any, props: Any) -> int:
            return _work(state, props)

        inst = C("serve-1")
        miss: list[int] = []
        hit: list[int] = []
        cache = app.cache
        next_k = 10  # every miss call gets props no call has used before
        for _ in range(rounds):
            before = cache.misses
            miss += time_calls(lambda i: inst.run("get", props={"k": i}), n, start=next_k, warm=warm)
            next_k += n + warm
            missed = cache.misses - before
            check(missed == n + warm, f"{missed} of {n + warm} calls with new props missed the cache")
            # The miss loop evicted the k=1 entry: the first (warmup) call refills it.
            before = cache.hits
            hit += time_calls(lambda i: inst.run("get", props={"k": 1}), n, warm=warm)
            hits = cache.hits - before
            check(hits >= n + warm - 1, f"only {hits} of {n + warm} calls with the same props hit the cache")
        check(inst.run("get", props={"k": next_k}) == next_k + 1, "serve returned a wrong result")
        check(inst.run("get", props={"k": 1}) == 2, "cached serve returned a wrong result")
        inst.close()
    return _summarise(miss, hit)


if __name__ == "__main__":
    from .run_all import main

    main(["--only", NAME])
