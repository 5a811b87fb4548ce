"""Export never holds up the serve path: with the receiver refusing
connections, or accepting them and never answering, runs stay fast, spans
are dropped or counted as failed, and nothing raises."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ports import free_port

import tidal


@pytest.fixture(params=["refused", "silent"])
def dead_receiver(request: Any) -> Iterator[str]:
    """An OTLP URL whose server refuses connections, or takes them and never answers."""
    if request.param == "refused":
        yield f"http://127.0.0.1:{free_port()}/v1/traces"
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1000)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/traces"


def test_a_dead_receiver_never_slows_or_breaks_serving(tmp_path: Any, dead_receiver: str) -> None:
    app = tidal.App("traces-down", store=f"sqlite:///{tmp_path}/store.db")
    try:
        exporter = app.export_traces(dead_receiver, timeout=3.0, max_queue=300)
        Echo = app.component("Echo")

        @Echo.serve("echo")
        def echo(state: Any, props: Any) -> Any:
            return props["i"]

        inst = Echo("e")
        serving = 0.0
        for burst in range(4):
            for i in range(250):
                t0 = time.perf_counter()
                assert inst.run("echo", {"i": burst * 1000 + i}) == burst * 1000 + i
                serving += time.perf_counter() - t0
            app.flush_runs()  # hands the burst to the exporter, which is stuck on the receiver
        # Each export request is stuck for up to 3 s: had any run waited for
        # one, the 1,000 runs would have taken that long (they take ~20 ms).
        assert serving < 2.0, serving
        assert app.sql("SELECT count(*) AS n FROM runs").scalar() == 1000
        exporter.flush(10)
        stats = exporter.stats()
        assert stats.exported == 0
        assert stats.dropped > 0 and stats.failed > 0
        assert stats.failed + stats.dropped + stats.pending == 1000
        assert stats.last_error is not None and dead_receiver in stats.last_error
    finally:
        t0 = time.perf_counter()
        app.close()
    assert time.perf_counter() - t0 < 15  # closing gives up on the receiver in bounded time
