"""A real Redis Cluster for tests: :func:`start_redis` servers in cluster
mode on free loopback ports, joined with ``redis-cli --cluster create`` —
masters only, or each with replicas (for failover tests), in plain TCP or
TLS on every link. Stopped like any test server (see :mod:`servers`, which
re-exports these)."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis_servers import RedisServer, RedisUnavailable, start_redis

if TYPE_CHECKING:
    import redis.cluster


@dataclass
class RedisClusterServers:
    """A running throw-away Redis Cluster (see :func:`start_redis_cluster`)."""

    nodes: list[RedisServer]

    @property
    def tls(self) -> Path | None:
        """Folder of the certificates every node uses, when the cluster speaks TLS."""
        return self.nodes[0].tls if self.nodes else None

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed every node's certificate (TLS only)."""
        return self.nodes[0].ca_file

    def running(self) -> list[RedisServer]:
        """The nodes not killed or stopped."""
        return [node for node in self.nodes if node.process is not None and node.process.poll() is None]

    def url(self) -> str:
        """``redis://host:port/0`` (``rediss://`` over TLS) of the first node
        still running: a cluster client finds the others."""
        return self.running()[0].url()

    def connect(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A redis-py cluster client (over TLS, trusting the nodes' CA)."""
        import redis.cluster

        node = self.running()[0]
        options: dict[str, Any] = {"host": node.host, "port": node.port}
        if node.tls is not None:
            options.update(ssl=True, ssl_ca_certs=str(node.ca_file))
        return redis.cluster.RedisCluster(**{**options, **kwargs})

    def node(self, address: str) -> RedisServer:
        """The node at ``host:port``, as a cluster client names it."""
        for node in self.nodes:
            if f"{node.host}:{node.port}" == address:
                return node
        raise KeyError(f"no node of this cluster at {address}")

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The nodes that ``master`` knows as its replicas."""
        with master.connect(socket_timeout=5.0) as client:
            known = client.cluster("NODES")
        own_id = next(n["node_id"] for n in known.values() if "myself" in n["flags"])
        return [self.node(address) for address, n in known.items() if n["master_id"] == own_id]

    def stop(self) -> None:
        """Stop every node and remove their directories. Idempotent."""
        for node in self.nodes:
            node.stop()


def start_redis_cluster(
    masters: int = 3,
    *,
    replicas: int = 0,
    node_timeout_ms: int = 5000,
    tls: bool = False,
    timeout: float = 60,
) -> RedisClusterServers:
    """Start ``masters * (1 + replicas)`` redis-servers in cluster mode,
    join them with ``redis-cli --cluster create --cluster-replicas
    replicas`` (the slots shared out evenly among the masters), and wait
    until the cluster has settled (see :func:`_unsettled`).

    ``node_timeout_ms`` is each node's ``--cluster-node-timeout``: after that
    long without an answer from a master, the others mark it failed and its
    replica starts an election (a failover test wants it short). ``tls``:
    every node speaks TLS only, to clients, on the cluster bus and for
    replication, with one certificate signed by one CA
    (:attr:`RedisClusterServers.ca_file`). The caller must call
    :meth:`RedisClusterServers.stop`."""
    nodes: list[RedisServer] = []
    cluster = RedisClusterServers(nodes)
    try:
        first = start_redis(cluster=True, cluster_node_timeout_ms=node_timeout_ms, tls=tls)
        nodes.append(first)
        for _ in range(masters * (1 + replicas) - 1):  # the others share the first one's certificates
            nodes.append(start_redis(cluster=True, cluster_node_timeout_ms=node_timeout_ms, tls=first.tls or False))
        cli = shutil.which("redis-cli") or str(first.binary.with_name("redis-cli"))
        if not Path(cli).is_file():
            raise RedisUnavailable("redis-cli not found (the redis-tools package): it creates the test cluster")
        over_tls = ["--tls", "--cacert", str(first.ca_file)] if first.tls is not None else []
        addresses = [f"{node.host}:{node.port}" for node in nodes]
        cmd = [cli, *over_tls, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:  # the nodes never met: their logs say why
            logs = "\n".join(f"--- node {node.port}:\n{node.log_tail(1500)}" for node in nodes)
            raise RedisUnavailable(
                f"{' '.join(cmd)} did not finish within {timeout} s:\n{exc.stdout!r}\n{logs}"
            ) from exc
        if proc.returncode != 0:
            raise RedisUnavailable(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
        deadline = time.monotonic() + timeout
        for node in nodes:
            while (missing := _unsettled(node, masters, replicas)) is not None:
                if time.monotonic() > deadline:
                    raise RedisUnavailable(f"cluster node {node.port} not ready within {timeout} s: {missing}")
                time.sleep(0.05)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _unsettled(node: RedisServer, masters: int, replicas: int) -> str | None:
    """What ``node`` does not see yet of a settled cluster, or None once it
    sees all of it: ``cluster_state:ok``; every node known; each of the
    ``masters`` with its ``replicas`` (all the nodes must know which replica
    is whose, as the masters vote on a failover); and its own replication
    link up: a master with all its replicas attached, a replica in sync."""
    client = node.connect(socket_timeout=1.0)
    try:
        info = client.cluster("INFO")  # parsed into a dict of str
        if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != str(masters * (1 + replicas)):
            return f"CLUSTER INFO says {info}"
        known = client.cluster("NODES")
        owners = [n for n in known.values() if "master" in n["flags"] and n["slots"]]
        followers = [n for n in known.values() if "slave" in n["flags"] and n["master_id"] != "-"]
        if len(owners) != masters or len(followers) != masters * replicas:
            return f"CLUSTER NODES says {known}"
        replication = client.info("replication")
        if replication["role"] == "master" and int(replication["connected_slaves"]) != replicas:
            return f"INFO replication says {replication}"
        if replication["role"] == "slave" and replication["master_link_status"] != "up":
            return f"INFO replication says {replication}"
        return None
    finally:
        client.close()
