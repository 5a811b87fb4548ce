"""Update throughput of ``tidal worker`` processes on Redis, by worker count.

    python -m benchmarks.workers_scaling [--redis URL | --cluster] [--instances 1000] [--updates 10]
                                         [--workers 1 2 4] [--trials 3] [--quick] [--json out.json]

For each worker count N and trial: a fresh namespace; ``--instances``
instances of a counter component made with ``disable_update_task=True``, and
a backlog of ``--updates`` counter increments per instance queued with
``run()``. Then N ``python -m tidal.cli worker`` processes (one update thread
each) are started together. Their app file waits on a gate file at import, so
interpreter and import start-up are not timed: the clock starts when the gate
opens and stops when the claim index (``G:ready``) is empty, i.e. when the last
instance's last batch is committed. Every trial then checks each instance
exactly (counter == updates, version == updates + 1, nothing pending or
failed); a lost or repeated update fails the run.

Without ``--redis`` a private ``redis-server`` (persistence off) is started on
a free loopback port; with ``--cluster``, a private Redis Cluster of three
masters (the test helpers' ``start_redis_cluster``), and the store URL gets
``cluster=1``. The worker processes, the Redis server and this process
share the machine's cores: on a 2-core machine do not expect more than ~2x,
and expect 4 workers to gain little over 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

import tidal
from tidal.codec import Codec
from tidal.stores.redis import RedisStore

from .common import BenchmarkFailure, check, machine_info, median, scratch_dir

SECRET = "workers-scaling-benchmark-secret-0123456789"

WORKER_APP = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    from tidal import Component

    Path(os.environ["BENCH_READY_DIR"], str(os.getpid())).write_text("ready")
    gate = Path(os.environ["BENCH_GATE"])
    while not gate.exists():
        time.sleep(0.002)

    Counter = Component("Counter")

    @Counter.init_state
    def setup():
        return {"n": 0}

    @Counter.update("inc")
    def inc(state, props):
        return {"n": state["n"] + 1}
    """
)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# -- Redis ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def private_redis(folder: Path) -> Iterator[str]:
    """A throw-away ``redis-server`` on a free loopback port, persistence off."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise SystemExit("redis-server not found: install it (apt-get install redis-server) or pass --redis URL")
    port = _free_port()
    argv = [
        binary,
        "--save",
        "",
        "--appendonly",
        "no",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(folder),
    ]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server did not start: {' '.join(argv)}") from None
                time.sleep(0.02)
        yield url
    finally:
        client.close()
        server.terminate()
        server.wait(30)


def _drop_namespace(urls: Sequence[str], namespace: str) -> None:
    """Delete the namespace's keys on each server (every node of a cluster)."""
    for url in urls:
        client = redis.Redis.from_url(url)
        try:
            keys = list(client.scan_iter(match=f"*{namespace}*", count=10_000))
            for key in keys:  # one by one: on a cluster node the keys are of many slots
                client.delete(key)
        finally:
            client.close()


@contextmanager
def private_cluster() -> Iterator[list[str]]:
    """A throw-away Redis Cluster of three masters; yields its nodes' URLs."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from servers import start_redis_cluster  # type: ignore[import-not-found]

    cluster = start_redis_cluster()
    try:
        yield [node.url() for node in cluster.nodes]
    finally:
        cluster.stop()


# -- one trial --------------------------------------------------------------


def _backlog(store_url: str, home: Path, instances: int, updates: int) -> float:
    """Create the instances and queue ``updates`` increments on each; returns seconds."""
    app = tidal.App("bench", store=store_url, home=home, secret_key=SECRET, runs_log=False)
    try:
        Counter = app.component("Counter")

        @Counter.init_state
        def setup() -> dict[str, int]:
            return {"n": 0}

        @Counter.update("inc")
        def inc(state: Any, props: Any) -> dict[str, int]:
            raise AssertionError("the benchmark process never applies updates")

        t0 = time.perf_counter()
        handles = [Counter(f"c{k}", disable_update_task=True) for k in range(instances)]
        for _ in range(updates):
            for h in handles:
                h.run("inc")
        return time.perf_counter() - t0
    finally:
        app.close()


def _verify(store: RedisStore, instances: int, updates: int) -> None:
    codec = Codec(SECRET.encode())
    for k in range(instances):
        name = f"c{k}"
        read = store.read_state("Counter", name)
        check(read is not None, f"Counter/{name} is missing")
        assert read is not None
        n = codec.loads(read.changed["n"])
        check(n == updates, f"Counter/{name}: counter is {n}, expected {updates} (an update was lost or repeated)")
        check(read.version == updates + 1, f"Counter/{name}: version {read.version}, expected {updates + 1}")
        check(store.pending("Counter", name) == 0, f"Counter/{name}: ops still pending")
        check(store.failures("Counter", name) == [], f"Counter/{name}: failed ops")


def _stop(workers: Sequence[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(15)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait(15)


def trial(urls: Sequence[str], n_workers: int, instances: int, updates: int, cluster: bool) -> dict[str, float]:
    """One drain of ``instances * updates`` queued updates by ``n_workers``
    processes, on the server of ``urls[0]`` or the cluster of all ``urls``."""
    namespace = f"bench_{uuid.uuid4().hex[:12]}"
    store_url = f"{urls[0]}?namespace={namespace}" + ("&cluster=1" if cluster else "")
    with scratch_dir("tidal-bench-workers-") as folder:
        (folder / "scaleapp.py").write_text(WORKER_APP)
        ready_dir, gate = folder / "ready", folder / "gate"
        ready_dir.mkdir()
        enqueue_s = _backlog(store_url, folder / "home", instances, updates)
        env = {
            **os.environ,
            "TIDAL_SECRET_KEY": SECRET,
            "TIDAL_HOME": str(folder / "home"),
            "BENCH_READY_DIR": str(ready_dir),
            "BENCH_GATE": str(gate),
        }
        argv = [sys.executable, "-m", "tidal.cli", "worker", "scaleapp.py", "--store", store_url, "--threads", "1"]
        logs = [open(folder / f"worker{k}.log", "wb") for k in range(n_workers)]  # noqa: SIM115
        workers = [
            subprocess.Popen(argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
            for fh in logs
        ]
        store = RedisStore.from_url(store_url)
        try:
            deadline = time.monotonic() + 60
            while len(list(ready_dir.iterdir())) < n_workers:
                if any(w.poll() is not None for w in workers) or time.monotonic() > deadline:
                    raise BenchmarkFailure("a worker did not start:\n" + _tails(folder, n_workers))
                time.sleep(0.01)
            ready = store.keys.of_component("ready", "Counter")
            check(store.client.zcard(ready) == instances, "the backlog is not in the claim index")
            t0 = time.perf_counter()
            gate.write_text("go")
            deadline = time.monotonic() + 600
            while store.client.zcard(ready):
                if any(w.poll() is not None for w in workers) or time.monotonic() > deadline:
                    raise BenchmarkFailure("the workers did not drain the backlog:\n" + _tails(folder, n_workers))
                time.sleep(0.005)
            drain_s = time.perf_counter() - t0
            _verify(store, instances, updates)
        finally:
            _stop(workers)
            for fh in logs:
                fh.close()
            store.close()
            _drop_namespace(urls, namespace)
    total = instances * updates
    return {"workers": n_workers, "updates": total, "drain_s": drain_s, "rate": total / drain_s, "enqueue_s": enqueue_s}


def _tails(folder: Path, n: int) -> str:
    return "\n".join(
        f"--- worker{k} ---\n" + (folder / f"worker{k}.log").read_text(errors="replace")[-2000:] for k in range(n)
    )


# -- main -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers_scaling", description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--redis", metavar="URL", help="a Redis server to use (default: start a private one)")
    where.add_argument("--cluster", action="store_true", help="start a private Redis Cluster of 3 masters instead")
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=10, help="queued updates per instance")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker process counts")
    parser.add_argument("--trials", type=int, default=3, help="trials per worker count (the median is reported)")
    parser.add_argument("--quick", action="store_true", help="100 instances x 5 updates, 1 trial: a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.instances, args.updates, args.trials = 100, 5, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cores = _cores()
    print(
        f"{cores} core(s) here, shared by the worker processes, redis-server and this process: "
        + ("do not expect linear scaling." if cores < max(args.workers) + 1 else "scaling may be near linear."),
        flush=True,
    )
    print(
        f"{args.instances} instances x {args.updates} queued updates = {args.instances * args.updates} updates "
        f"per drain; {args.trials} trial(s) per worker count, median reported",
        flush=True,
    )
    results: dict[int, list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        if args.cluster:
            urls = stack.enter_context(private_cluster())
        elif args.redis is None:
            urls = [stack.enter_context(private_redis(stack.enter_context(scratch_dir("tidal-bench-redis-"))))]
        else:
            urls = [args.redis]
        for trial_no in range(args.trials):
            for n in args.workers:  # interleaved, so drift hits every count alike
                r = trial(urls, n, args.instances, args.updates, args.cluster)
                results.setdefault(n, []).append(r)
                print(
                    f"  trial {trial_no + 1}: {n} worker(s): {r['rate']:,.0f} updates/s "
                    f"(drain {r['drain_s']:.2f} s; backlog queued in {r['enqueue_s']:.1f} s)",
                    flush=True,
                )
    base = median([r["rate"] for r in results[args.workers[0]]])
    print(f"\nworkers  updates/s (median)  range             vs {args.workers[0]}")
    rows = []
    for n in args.workers:
        rates = [r["rate"] for r in results[n]]
        med = median(rates)
        rows.append({"workers": n, "median_updates_per_s": med, "rates": rates})
        print(f"{n:>7}  {med:>18,.0f}  {min(rates):>7,.0f}-{max(rates):<7,.0f}  {med / base:5.2f}x")
    if args.json:
        data = {
            "cluster": args.cluster,
            "instances": args.instances,
            "updates_per_instance": args.updates,
            "trials": args.trials,
            "results": rows,
            "machine": machine_info(),
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkFailure as exc:
        print(f"WRONG RESULT: {exc}", file=sys.stderr)
        sys.exit(1)
