"""What a process keeps per instance is bounded: the snapshots of the
instances it served lately, least recently used dropped first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tidal
from tidal.config import Settings
from tidal.lru import LRU


def test_recent_drops_the_least_recently_used() -> None:
    recent: LRU[str, int] = LRU(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # a is now the most recent
    recent.put("c", 3)
    assert recent.get("b") is None
    assert (recent.get("a"), recent.get("c"), len(recent)) == (1, 3, 2)


def test_a_process_holds_at_most_the_configured_snapshots_and_serves_dropped_ones_again(tmp_path: Path) -> None:
    app = tidal.App("bounded", store=f"sqlite:///{tmp_path / 'b.db'}", settings=Settings(snapshot_instances=20))
    Counter = app.component("Counter")

    @Counter.init_state
    def setup(start: int = 0) -> dict[str, int]:
        return {"n": start}

    @Counter.serve("get")
    def get(state: Any, props: tidal.Properties) -> int:
        return int(state["n"])

    try:
        for i in range(200):
            assert Counter(f"u{i}", {"start": i}).run("get") == i
        assert app.snapshots_held == 20
        # u0 was dropped long ago: it is read again, with its own state.
        inst = Counter("u0")
        assert inst.run("get", props={"fresh": 1}) == 0
        inst.write_state({"n": 41})
        assert inst.run("get", props={"fresh": 2}) == 41
        assert app.snapshots_held == 20
    finally:
        app.close()


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="snapshot_instances"):
        Settings(snapshot_instances=0)


def test_cached_results_hold_their_keys_at_their_own_size(tmp_path: Path) -> None:
    """A cached serve result is kept under its props key; the key must not
    keep the serializer's whole output buffer alive (4 KB each with orjson 3.13)."""
    import tracemalloc

    app = tidal.App("keys", store="memory://")
    C = app.component("Echo")

    @C.serve("echo")
    def echo(state: Any, props: tidal.Properties) -> int:
        return int(props["i"])

    inst = C("e")
    inst.run("echo", props={"i": -1})  # everything else warmed up
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            inst.run("echo", props={"i": i})
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        app.close()
    assert held / 2000 < 2000, f"{held / 2000:.0f} bytes per cached result"
