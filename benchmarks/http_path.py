"""The HTTP path: ``tidal serve`` against a bare FastAPI endpoint doing the same work.

Two servers, each a subprocess under uvicorn on a free loopback port, with
the same uvicorn settings (one worker, ``--log-level info``, the access log
off; then again with it on):

* ``tidal serve`` on a small app file: one component ``Counter`` whose serve
  op reads the state value ``n`` and adds the prop ``k``; an API key is
  required (made with ``tidal keys create``) and the runs log is on, as in a
  deployed app. Request: ``POST /components/Counter/instances/u1/flows/add``
  with ``{"props": {"k": 1}}`` and ``Authorization: Bearer tidal_…``.
* a bare FastAPI app: ``POST /add/{instance}`` with the same body (a pydantic
  model with a ``props`` dict), reading ``n`` from a plain dict and adding
  ``k``; no auth, no log.

Endpoints measured: the flow call, Tidal's ``/healthz``, the bare endpoint,
and the bare app's FastAPI ``/docs`` (a static HTML page). Load comes from
``wrk`` (1 thread, 16 connections, ``--latency``) when it is on the PATH
(``apt-get install -y wrk`` on Debian), else from a Python load generator
(httpx on asyncio, 16 connections: it saturates a core itself, so its figures
are lower and only its ratios compare). Each endpoint runs for a fixed time,
in rounds interleaved endpoint by endpoint; the table shows the median of
the rounds. Every response is checked once before the load starts.

``--compare DIR`` also serves the same app with the Tidal package found in
``DIR`` (e.g. an export of an earlier commit), interleaved with the rest:
before/after on the same machine in the same session.

Loopback only; every server is stopped at the end (or on error).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import check, median, scratch_dir

CONNECTIONS = 16
BODY = json.dumps({"props": {"k": 1}})
EXPECTED = 42  # n (41) + k (1)

APP_FILE = '''\
"""The app `benchmarks.http_path` serves: one serve op reading a state value."""

from typing import Any

import tidal

app = tidal.default_app()
counter = app.component("Counter")


@counter.init_state
def setup() -> dict[str, Any]:
    return {"n": 41}


@counter.serve("add")
def add(state: Any, props: Any) -> int:
    return int(state["n"] + props["k"])
'''

BARE_FILE = '''\
"""The bare FastAPI app `benchmarks.http_path` compares Tidal with."""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

api = FastAPI()
STATE: dict[str, dict[str, Any]] = {}


class RunRequest(BaseModel):
    props: dict[str, Any] = {}


@api.post("/add/{instance}")
async def add(instance: str, body: RunRequest) -> dict[str, Any]:
    state = STATE.setdefault(instance, {"n": 41})
    return {"instance": instance, "result": int(state["n"] + body.props["k"])}
'''

WRK_SCRIPT = """\
wrk.method = "{method}"
wrk.body = {body}
{headers}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Target:
    """One endpoint under load."""

    name: str
    url: str
    method: str = "GET"
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]


def _env(pythonpath: str, home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": pythonpath, "TIDAL_HOME": str(home)}


def _wait_ready(server: Server, path: str, log: Path, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(server.url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            server.proc.kill()
            raise RuntimeError(f"{server.name} did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


@contextmanager
def servers(folder: Path, *, access_log: bool, compare: Path | None) -> Iterator[tuple[list[Server], dict[str, str]]]:
    """Start the servers; yields them and the API key per Tidal server."""
    here = str(Path(__file__).resolve().parent.parent)
    (folder / "http_app.py").write_text(APP_FILE)
    (folder / "bare_app.py").write_text(BARE_FILE)
    trees = [("tidal", here)] + ([("tidal@compare", str(compare.resolve()))] if compare else [])
    started: list[Server] = []
    keys: dict[str, str] = {}
    log_flag = "--access-log" if access_log else "--no-access-log"
    try:
        for i, (name, tree) in enumerate(trees):
            env = _env(tree, folder / f"home{i}")
            store = f"sqlite:///{folder / f'tidal{i}.db'}"
            common = ["--app", "bench", "--store", store]
            made = subprocess.run(
                [sys.executable, "-m", "tidal.cli", "keys", "create", "--name", "bench", "--write", *common],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            keys[name] = made.stdout.strip().splitlines()[-1]
            port = free_port()
            log = folder / f"{name}.log"
            argv = [sys.executable, "-m", "tidal.cli", "serve", str(folder / "http_app.py"), *common]
            argv += ["--port", str(port), "--api-key-required", "--log-level", "info"]
            argv.append(log_flag)  # `tidal serve --access-log/--no-access-log`: uvicorn's setting
            with log.open("wb") as out:
                proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
            server = Server(name, f"http://127.0.0.1:{port}", proc)
            started.append(server)
            _wait_ready(server, "/healthz", log)
        port = free_port()
        log = folder / "bare.log"
        argv = [sys.executable, "-m", "uvicorn", "bare_app:api", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--log-level", "info", log_flag]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, env=_env(here, folder / "bare"), stdout=out, stderr=subprocess.STDOUT, cwd=folder
            )
        bare = Server("bare", f"http://127.0.0.1:{port}", proc)
        started.append(bare)
        _wait_ready(bare, "/docs", log)
        yield started, keys
    finally:
        for server in started:
            server.proc.terminate()
        for server in started:
            try:
                server.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait(timeout=15)


def targets(started: list[Server], keys: dict[str, str]) -> list[Target]:
    out: list[Target] = []
    json_ct = ("Content-Type", "application/json")
    for server in started:
        if server.name == "bare":
            out.append(Target("bare: POST /add/u1", server.url + "/add/u1", "POST", BODY, (json_ct,)))
            out.append(Target("bare: GET /docs", server.url + "/docs"))
        else:
            auth = ("Authorization", f"Bearer {keys[server.name]}")
            flow = server.url + "/components/Counter/instances/u1/flows/add"
            out.append(Target(f"{server.name}: flow call", flow, "POST", BODY, (json_ct, auth)))
            out.append(Target(f"{server.name}: GET /healthz", server.url + "/healthz"))
    return out


def verify(target: Target) -> None:
    """One request, checked: the endpoints must do their work (and auth pass)."""
    import httpx

    response = httpx.request(target.method, target.url, content=target.body, headers=dict(target.headers), timeout=10)
    check(response.status_code == 200, f"{target.name}: HTTP {response.status_code}: {response.text[:300]}")
    if target.body is not None:
        data = response.json()
        check(data["result"] == EXPECTED, f"{target.name}: result {data['result']!r}, expected {EXPECTED}")
        if "run_id" in data:
            check(data["run_id"] is not None, f"{target.name}: no run id: the runs log must be on")


# -- load -----------------------------------------------------------------


def _wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"cannot read wrk latency {text!r}")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "us" else value * 1000 if m.group(2) == "s" else value


def load_wrk(target: Target, seconds: float, folder: Path) -> dict[str, float]:
    headers = "\n".join(f'wrk.headers["{k}"] = {json.dumps(v)}' for k, v in target.headers)
    script = folder / "wrk.lua"
    body = json.dumps(target.body) if target.body is not None else "nil"
    script.write_text(WRK_SCRIPT.format(method=target.method, body=body, headers=headers))
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script)]
    done = subprocess.run([*argv, target.url], capture_output=True, text=True, timeout=seconds + 60, check=True)
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _wrk_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _wrk_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    check(bad is None, f"{target.name}: {bad.group(1) if bad else 0} non-2xx responses under load")
    errors = re.search(r"Socket errors: .*", out)
    check(errors is None or "timeout 0" in errors.group(0), f"{target.name}: wrk {errors.group(0) if errors else ''}")
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99}


def load_python(target: Target, seconds: float) -> dict[str, float]:
    """``CONNECTIONS`` keep-alive connections, each sending its next request
    as soon as the last is answered, for ``seconds``."""
    import httpx

    async def go() -> tuple[int, list[float], int]:
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        latencies: list[float] = []
        failures = 0
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            stop = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal failures
                while time.perf_counter() < stop:
                    t0 = time.perf_counter()
                    r = await client.request(
                        target.method, target.url, content=target.body, headers=dict(target.headers)
                    )
                    latencies.append((time.perf_counter() - t0) * 1000)
                    failures += r.status_code != 200

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
            return len(latencies), latencies, failures if time.perf_counter() - started > 0 else 0

    count, latencies, failures = asyncio.run(go())
    check(failures == 0, f"{target.name}: {failures} failed responses under load")
    latencies.sort()
    return {
        "rps": count / seconds,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


# -- report ---------------------------------------------------------------


def measure(
    folder: Path, *, access_log: bool, rounds: int, seconds: float, compare: Path | None, use_wrk: bool
) -> dict[str, dict[str, float]]:
    samples: dict[str, list[dict[str, float]]] = {}
    with servers(folder, access_log=access_log, compare=compare) as (started, keys):
        tlist = targets(started, keys)
        for t in tlist:
            verify(t)
            # warm up: imports, first instance load, caches
            load_wrk(t, 1, folder) if use_wrk else load_python(t, 1)
        for _ in range(rounds):
            for t in tlist:
                result = load_wrk(t, seconds, folder) if use_wrk else load_python(t, seconds)
                samples.setdefault(t.name, []).append(result)
    return {
        name: {
            "rps": median([s["rps"] for s in runs]),
            "p50_ms": median([s["p50_ms"] for s in runs]),
            "p99_ms": median([s["p99_ms"] for s in runs]),
            "rps_rounds": [s["rps"] for s in runs],  # type: ignore[dict-item]
        }
        for name, runs in samples.items()
    }


def report(title: str, results: dict[str, dict[str, Any]]) -> str:
    bare = results["bare: POST /add/u1"]["rps"]
    docs = results["bare: GET /docs"]["rps"]
    lines = [
        f"### {title}",
        "",
        "| endpoint | req/s (rounds) | req/s median | p50 ms | p99 ms | slower than bare by |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        rounds = ", ".join(f"{v:,.0f}" for v in r["rps_rounds"])
        ref = docs if name.endswith("/healthz") or name.endswith("/docs") else bare
        ratio = f"{ref / r['rps']:.2f}x" + (" (vs /docs)" if ref is docs else "")
        lines.append(f"| {name} | {rounds} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.http_path", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s per endpoint, access log off only")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per endpoint (default 3; 1 with --quick)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per endpoint and round (default 5)")
    parser.add_argument("--compare", type=Path, default=None, help="also serve with the tidal package in DIR")
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even if wrk is here")
    parser.add_argument("--no-access-log-on", action="store_true", help="skip the runs with the access log on")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    use_wrk = shutil.which("wrk") is not None and not args.python_load
    print(
        f"load: {'wrk -t1' if use_wrk else 'python (httpx/asyncio)'}, {CONNECTIONS} connections; "
        f"{rounds} round(s) of {seconds:g} s per endpoint, interleaved",
        flush=True,
    )
    modes = [False] if args.quick or args.no_access_log_on else [False, True]
    with scratch_dir("tidal-bench-http-") as folder:
        for access_log in modes:
            here = folder / ("log-on" if access_log else "log-off")
            here.mkdir()
            results = measure(
                here, access_log=access_log, rounds=rounds, seconds=seconds, compare=args.compare, use_wrk=use_wrk
            )
            title = f"uvicorn access log {'on' if access_log else 'off'}"
            print()
            print(textwrap.dedent(report(title, results)), flush=True)


if __name__ == "__main__":
    main()
