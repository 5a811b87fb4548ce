"""Instance lifecycle: create an instance under a new id (its init_state runs
and is committed), run one serve, close it.

The component also has an update flow, as most components do, so creating an
instance makes sure the app's executor is running (once per app, not per
instance). The floor is the init_state function and the serve function
called on a plain dict.
"""

from __future__ import annotations

from typing import Any

from .common import Config, Metric, bench_app, check, median, ms, percentile, time_calls

NAME = "lifecycle"
TITLE = "instance lifecycle (create new id, one serve, close)"

METRICS = [
    Metric("p50", "create + serve + close, p50", "ms", target=2, motion=74),
    Metric("p99", "create + serve + close, p99", "ms"),
    Metric("mean", "create + serve + close, mean", "ms"),
]


def _setup() -> dict[str, Any]:
    return {"n": 0, "history": []}


def _get(state: Any, props: Any) -> int:
    return int(state["n"] + props["k"])


def _inc(state: Any, props: Any) -> dict[str, int]:
    return {"n": state["n"] + 1}


def _sizes(cfg: Config) -> tuple[int, int]:
    """(rounds, instances per round)."""
    return cfg.pick(3, 1), cfg.pick(1_000, 100)


def _summarise(samples: list[int]) -> dict[str, float]:
    return {
        "p50": ms(median(samples)),
        "p99": ms(percentile(samples, 99)),
        "mean": ms(sum(samples) / len(samples)),
    }


def baseline(cfg: Config) -> dict[str, float]:
    rounds, n = _sizes(cfg)
    samples: list[int] = []
    for _ in range(rounds):
        samples += time_calls(lambda i: _get(_setup(), {"k": 1}), n, warm=50)
    return _summarise(samples)


def run(store: str, cfg: Config) -> dict[str, float]:
    rounds, n = _sizes(cfg)
    samples: list[int] = []
    with bench_app(store) as app:
        C = app.component("Session")
        C.init_state(_setup)
        C.serve("get")(_get)
        C.update("inc")(_inc)

        def lifecycle(i: int) -> None:
            inst = C(f"session-{i}")
            check(inst.run("get", props={"k": 1}) == 1, "serve returned a wrong result")
            inst.close()

        start = 0
        for _ in range(rounds):
            samples += time_calls(lifecycle, n, start=start, warm=50)
            start += n + 50
        made = len(app.store.list_instances("Session"))
        check(made == start, f"{made} instances in the store after creating {start}")
    return _summarise(samples)


if __name__ == "__main__":
    from .run_all import main

    main(["--only", NAME])
