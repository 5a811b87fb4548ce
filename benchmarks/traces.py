"""What exporting traces costs the serve path: serve latency with
``app.export_traces(...)`` on against off, interleaved in the same run.

Two apps side by side (SQLite stores in a scratch folder), one exporting to
an OTLP/HTTP receiver, one not; rounds alternate which goes first. Each
loop times ``CALLS`` serve calls one by one (cache misses: new props every
call, so every call is a run and, with export on, a span). The runs log
writes and the exporter builds and sends spans in their threads while the
loop runs, so their cost shows up as GIL time taken from the serving thread.
Two figures per side:

* per call p50 / p99 / mean (``perf_counter_ns`` around each ``run``);
* the loop's time per call including writing every run and, with export on,
  sending every span (``app.flush_runs()`` and ``exporter.flush()`` inside
  the clock): the whole CPU cost, background included.

The receiver is a minimal OTLP/HTTP sink in a child process (it answers 200
to every POST and counts the bytes), so that its own CPU is not this
process's; ``--endpoint URL`` sends to a receiver of your own (Phoenix:
``http://127.0.0.1:6006/v1/traces``) instead. Checks: every run is in
``runs`` and, with the built-in sink, every span was exported (none failed
or dropped).

    python -m benchmarks.traces [--calls 20000] [--rounds 5] [--endpoint URL]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from typing import Any

import tidal

from .common import median, percentile

SINK = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def start_sink() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}/v1/traces"


def make_app(folder: str, name: str) -> tuple[tidal.App, Any]:
    app = tidal.App(name, store=f"sqlite:///{folder}/{name}.db")
    Echo = app.component("Echo")

    @Echo.serve("echo")
    def echo(state: Any, props: Any) -> Any:
        return {"i": props["i"], "text": "x" * 40}

    return app, Echo("e")


def loop(app: tidal.App, inst: Any, exporter: Any, start: int, calls: int) -> tuple[list[int], float]:
    app.flush_runs()
    if exporter is not None:
        exporter.flush(60)
    samples = []
    clock = time.perf_counter_ns
    t0 = clock()
    for i in range(start, start + calls):
        s = clock()
        inst.run("echo", {"i": i})
        samples.append(clock() - s)
    app.flush_runs()
    if exporter is not None:
        assert exporter.flush(60), "the exporter did not catch up"
    return samples, (clock() - t0) / calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--endpoint", help="an OTLP/HTTP receiver of your own (default: a minimal sink)")
    args = parser.parse_args(argv)
    sink = None
    endpoint = args.endpoint
    if endpoint is None:
        sink, endpoint = start_sink()
    with tempfile.TemporaryDirectory(prefix="tidal-bench-traces-") as folder:
        off_app, off = make_app(folder, "off")
        on_app, on = make_app(folder, "on")
        exporter = on_app.export_traces(endpoint)
        results: dict[str, dict[str, list[float]]] = {k: {"calls": [], "total": []} for k in ("off", "on")}
        try:
            loop(off_app, off, None, 10_000_000, 2000)  # warm up both
            loop(on_app, on, exporter, 10_000_000, 2000)
            for r in range(args.rounds):
                order = [("off", off_app, off, None), ("on", on_app, on, exporter)]
                for key, app, inst, exp in order if r % 2 == 0 else order[::-1]:
                    samples, total = loop(app, inst, exp, r * args.calls, args.calls)
                    results[key]["calls"].extend(samples)
                    results[key]["total"].append(total)
            runs = args.rounds * args.calls + 2000
            for app in (off_app, on_app):
                assert app.sql("SELECT count(*) FROM runs").scalar() == runs
            stats = exporter.stats()
            if args.endpoint is None:
                assert stats.exported == runs and stats.failed == stats.dropped == 0, stats
        finally:
            off_app.close()
            on_app.close()
            if sink is not None:
                sink.terminate()
                sink.wait()
    print(f"serve path, {args.rounds} rounds x {args.calls} calls each side, interleaved; receiver {endpoint}")
    print(f"{'':<34}{'off':>10}{'on':>10}{'on/off':>9}")
    rows = [
        ("per call p50 (us)", lambda k: percentile(results[k]["calls"], 50) / 1000),
        ("per call p99 (us)", lambda k: percentile(results[k]["calls"], 99) / 1000),
        ("per call mean (us)", lambda k: sum(results[k]["calls"]) / len(results[k]["calls"]) / 1000),
        ("per call, all written + sent (us)", lambda k: median(results[k]["total"]) / 1000),
    ]
    for label, value in rows:
        a, b = value("off"), value("on")
        print(f"{label:<34}{a:>10.1f}{b:>10.1f}{b / a:>9.2f}")
    print(f"spans exported: {stats.exported}, failed {stats.failed}, dropped {stats.dropped}")


if __name__ == "__main__":
    main()
