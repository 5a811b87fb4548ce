"""A counter app for the Redis tests that run an App end to end on a store
URL (a cluster, TLS): each instance gets ``n`` increments from a thread of
its own, and its updates must all be applied, in order."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path
from typing import Any

import tidal
from tidal.config import Settings


def counter_app(url: str, home: Path, *, name: str, worker_threads: int) -> tuple[tidal.App, Any]:
    """An App on ``url`` with a ``Counter`` component: serve ``get`` (the
    count), update ``inc`` (count + 1, and ``props["i"]`` appended to ``seen``)."""
    app = tidal.App(
        name,
        store=url,
        home=home,
        settings=Settings(lease_seconds=5.0, sweep_seconds=0.05, worker_threads=worker_threads),
    )
    Counter = app.component("Counter")

    @Counter.init_state
    def setup() -> dict[str, Any]:
        return {"n": 0, "seen": []}

    @Counter.serve("get")
    def get(state, props):  # type: ignore[no-untyped-def]
        return state["n"]

    @Counter.update("inc")
    def inc(state, props):  # type: ignore[no-untyped-def]
        return {"n": state["n"] + 1, "seen": [*state["seen"], props["i"]]}

    return app, Counter


def count_in_threads(counters: list[tidal.Instance], n: int) -> None:
    """``n`` runs of ``inc`` on each instance, one thread per instance, then
    flush_update; checks every instance saw 0 .. n-1 in order."""

    def run(c: tidal.Instance) -> None:
        for i in range(n):
            c.run("inc", props={"i": i})

    threads = [threading.Thread(target=run, args=(c,)) for c in counters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in counters:
        c.flush_update(timeout=60)
    for c in counters:
        assert c.read_state("n") == n
        assert c.read_state("seen") == list(range(n))  # per-instance FIFO


TALLY_APP = textwrap.dedent(
    """
    from tidal import Component

    Tally = Component("Tally")

    @Tally.init_state
    def setup():
        return {"n": 0, "seen": []}

    @Tally.update("bump")
    def bump(state, props):
        return {"n": state["n"] + props.get("k", 1), "seen": [*state["seen"], props.get("i")]}
    """
)
"""An app file (``tallyapp.py``) for ``tidal worker`` subprocesses: ``bump``
adds ``props["k"]`` (1 if absent) to ``n`` and appends ``props["i"]`` to ``seen``."""
