"""Failover on a real Redis Cluster of three masters, each with a replica
(tests/redis_cluster_servers.py, a cluster per test, as each kills a
master): an App, and a ``tidal worker`` in a process of its own, go on
through the SIGKILL of a master and the promotion of its replica, with no
reopening and no restart. While the master is dead, the calls on its slots
fail with StoreError, quickly, and the calls on the other masters' slots go
on; once the replica has taken over, the same objects serve its slots
again; and the counts are the acknowledged updates, none lost, none run
twice.

Before each kill the test waits (``WAIT``) until the replica has the
master's writes: replication is asynchronous, and a write acknowledged but
not yet replicated is lost in a failover, which no client can prevent (see
:mod:`tidal.stores.redis.cluster`). Each kill happens while the replica has
``cluster-replica-no-failover`` on, and the test turns it off once it has
checked the calls made while the master is known dead: so that window does
not depend on timing, and the failover that follows is the cluster's own."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from servers import RedisClusterServers, RedisServer, start_redis_cluster

import tidal
from tidal.exceptions import StoreError
from tidal.stores.redis import RedisClusterStore

from .cluster_slots import node_of, spread
from .counters import TALLY_APP, counter_app

NODE_TIMEOUT_MS = 1000
"""How long a master may not answer before the others mark it failed."""

SECRET = "redis-failover-test-secret-0123456789"
T = TypeVar("T")

pytestmark = pytest.mark.slow  # a cluster of six nodes each, and seconds of failover


@pytest.fixture
def cluster() -> Iterator[RedisClusterServers]:
    cluster = start_redis_cluster(replicas=1, node_timeout_ms=NODE_TIMEOUT_MS)
    try:
        for node in cluster.nodes:
            with node.connect() as client:
                # Else, between the moment a master is marked failed and its
                # replica's promotion, every node refuses every key.
                client.config_set("cluster-require-full-coverage", "no")
                # A replica held back from its failover (see hold_failover)
                # takes over once let go, however long that took.
                client.config_set("cluster-replica-validity-factor", "0")
        yield cluster
    finally:
        cluster.stop()


def until(what: str, check: Callable[[], T], timeout: float = 20) -> T:
    """``check()``'s first truthy result, polled; the test fails (never
    hangs) when there is none within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return got


def replicated(master: RedisServer, key: str) -> None:
    """Return once ``master``'s replica has every write the master has
    acknowledged. WAIT counts the replicas that have the writes of its own
    connection, so it follows a write there (``key``: of a slot the master
    owns), which comes after all the others in the replication stream."""
    with master.connect(socket_timeout=10) as client:
        pipe = client.pipeline(transaction=False)
        pipe.set(key, b"1")
        pipe.execute_command("WAIT", 1, 5000)
        assert pipe.execute()[1] == 1


def flags(cluster: RedisClusterServers, node: RedisServer) -> list[list[str]]:
    """The flags that each running node gives ``node`` in CLUSTER NODES."""
    seen = []
    for other in cluster.running():
        with other.connect(socket_timeout=2) as client:
            seen.append(client.cluster("NODES")[f"{node.host}:{node.port}"]["flags"].split(","))
    return seen


def hold_failover(replica: RedisServer, hold: bool) -> None:
    """Forbid (or allow again) ``replica`` to take over from its master."""
    with replica.connect() as client:
        client.config_set("cluster-replica-no-failover", "yes" if hold else "no")


def fails_fast(call: Callable[[], Any]) -> None:
    """``call()`` raises StoreError (no other exception), within seconds."""
    start = time.monotonic()
    with pytest.raises(StoreError):
        call()
    assert time.monotonic() - start < 5


def kill_and_wait_until_failed(cluster: RedisClusterServers, master: RedisServer, replica: RedisServer) -> None:
    """SIGKILL ``master`` while ``replica`` may not take over, and wait until
    every other node marks it failed (after the node timeout)."""
    hold_failover(replica, True)
    master.kill()
    until("the other nodes mark the killed master failed", lambda: all("fail" in f for f in flags(cluster, master)))


def release_and_wait_until_promoted(cluster: RedisClusterServers, replica: RedisServer) -> None:
    """Let ``replica`` take over, and wait until every running node knows it as a master."""
    hold_failover(replica, False)
    until("the replica is promoted", lambda: all("master" in f for f in flags(cluster, replica)))


def test_an_app_goes_on_through_a_failover_and_loses_no_acknowledged_update(
    cluster: RedisClusterServers, tmp_path: Path
) -> None:
    app, Counter = counter_app(
        f"{cluster.url()}?namespace=fo&cluster=1", tmp_path / "home", name="fo", worker_threads=2
    )
    try:
        store = app.store
        assert isinstance(store, RedisClusterStore)
        names = spread(store, per_node=1, component="Counter")
        # Not the master of the global slot: with it, every enqueue and claim would wait for the failover.
        hub = store.client.get_node_from_key(store.keys.ids).name  # type: ignore[attr-defined]
        lost = next(name for name in names if node_of(store, name, "Counter") != hub)
        others = [name for name in names if name != lost]
        master = cluster.node(node_of(store, lost, "Counter"))
        (replica,) = cluster.replicas_of(master)
        counters = {name: Counter(name) for name in names}
        numbers = itertools.count()
        acked: dict[str, list[int]] = {name: [] for name in names}

        def inc(name: str) -> None:
            i = next(numbers)
            counters[name].run("inc", props={"i": i})
            acked[name].append(i)  # only once the call returned

        def flushed(group: list[str]) -> None:
            for name in group:
                counters[name].flush_update(timeout=15)
                assert counters[name].read_state("n") == len(acked[name])
                assert counters[name].read_state("seen") == acked[name]

        for _ in range(5):
            for name in names:
                inc(name)
        flushed(names)
        replicated(master, store.keys.tag("Counter", lost) + ":replicated")
        with replica.connect() as client:  # scripts run on a master are not in its replica's cache
            assert client.script_exists(store.scripts.instance_commit.sha) == [False]

        kill_and_wait_until_failed(cluster, master, replica)
        for _ in range(3):
            fails_fast(lambda: inc(lost))
            fails_fast(lambda: counters[lost].run("get"))
            for name in others:
                inc(name)
                assert counters[name].run("get") <= len(acked[name])
        # The others' updates are applied while the master is still dead,
        # though the failed enqueues left the dead one at the head of the
        # claim index.
        flushed(others)
        assert "slave" in flags(cluster, replica)[0]  # not promoted yet
        assert len(acked[lost]) == 5

        release_and_wait_until_promoted(cluster, replica)

        def served() -> bool:
            try:
                counters[lost].run("get")
            except StoreError:  # the client may still hold the old layout, until this call
                return False
            return True

        until("the instance on the dead master's slot is served again", served, timeout=10)
        assert node_of(store, lost, "Counter") == f"{replica.host}:{replica.port}"
        for _ in range(5):
            for name in names:
                inc(name)
        flushed(names)
        assert [counters[name].run("get") for name in names] == [len(acked[name]) for name in names]
        assert [len(acked[name]) for name in names] == [10 if name == lost else 13 for name in names]
        with replica.connect() as client:  # loaded there when the promoted node said NOSCRIPT
            assert client.script_exists(store.scripts.instance_commit.sha) == [True]
    finally:
        app.close()


def test_a_tidal_worker_goes_on_through_a_failover_of_the_global_slots_master(
    cluster: RedisClusterServers, tmp_path: Path
) -> None:
    """The master of the global slot (op ids, the claim index) dies: no
    enqueue and no claim can work until its replica takes over, and the
    worker, left running, picks up again after that."""
    url = f"{cluster.url()}?namespace=fw&cluster=1"
    (tmp_path / "tallyapp.py").write_text(TALLY_APP)
    env = {**os.environ, "TIDAL_HOME": str(tmp_path / "home"), "TIDAL_SECRET_KEY": SECRET, "TIDAL_STORE": url}
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tidal.cli", "worker", "tallyapp.py", "--threads", "2"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    app = tidal.App("fw", store=url, home=tmp_path / "home", secret_key=SECRET)
    try:
        Tally = app.component("Tally")

        @Tally.init_state
        def setup() -> dict[str, Any]:
            return {"n": 0, "seen": []}

        @Tally.update("bump")
        def bump(state: Any, props: Any) -> dict[str, Any]:
            raise AssertionError("run by the worker only")

        store = app.store
        assert isinstance(store, RedisClusterStore)
        names = spread(store, per_node=1, component="Tally")
        tallies = {name: Tally(name, disable_update_task=True) for name in names}
        numbers = itertools.count()
        acked: dict[str, list[int]] = {name: [] for name in names}

        def bump_all() -> None:
            for name in names:
                i = next(numbers)
                tallies[name].run("bump", props={"i": i})
                acked[name].append(i)

        def applied() -> bool:
            return not any(store.pending("Tally", name) for name in names)

        for _ in range(5):
            bump_all()
        until("the worker applies the first updates", applied, timeout=30)
        master = cluster.node(str(store.client.get_node_from_key(store.keys.ids).name))  # type: ignore[attr-defined]
        (replica,) = cluster.replicas_of(master)
        replicated(master, store.keys.ids + ":replicated")

        kill_and_wait_until_failed(cluster, master, replica)
        for tally in tallies.values():
            fails_fast(partial(tally.run, "bump", props={"i": -1}))
        # Reads need no global slot: those of the instances on the live masters go on.
        living = [name for name in names if node_of(store, name, "Tally") != f"{master.host}:{master.port}"]
        assert len(living) == 2 and all(tallies[name].read_state("n") == 5 for name in living)
        until("the worker meets the dead master", lambda: b"store error in update loop" in log.read_bytes())

        release_and_wait_until_promoted(cluster, replica)
        first = names[0]

        def enqueued() -> bool:
            i = next(numbers)
            try:
                tallies[first].run("bump", props={"i": i})
            except StoreError:  # the client may still hold the old layout, until this call
                return False
            acked[first].append(i)
            return True

        until("enqueues work again", enqueued, timeout=10)
        for _ in range(4):
            bump_all()
        until("the worker applies the updates made after the failover", applied, timeout=30)
        for name in names:
            assert tallies[name].read_state("seen") == acked[name]
            assert tallies[name].read_state("n") == len(acked[name]) == (10 if name == first else 9)
        assert worker.poll() is None, log.read_text(errors="replace")  # the same process all along
    finally:
        app.close()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, log.read_text(errors="replace")
