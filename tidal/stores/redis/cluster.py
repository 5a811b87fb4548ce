"""The Redis store on Redis Cluster: ``redis://host:port/0?cluster=1`` (any
node of the cluster; ``rediss://`` for TLS, with ``ssl_ca_certs`` and the
other parameters for redis-py going to the connections to every node),
opened by :meth:`RedisStore.from_url <tidal.stores.redis.store.RedisStore.from_url>`
(as a :class:`~tidal.stores.redis.store.RedisClusterStore`, whose paths are
:class:`ClusterPaths`).

The keys and scripts are those of the one-server store in its single-slot
mode (:mod:`~tidal.stores.redis.two_step`) (``?cluster=1`` implies ``single_slot=1``, and refuses
``single_slot=0``): every script call declares keys of one hash slot only,
an instance's or the global one, and goes to the node that owns that
slot, as found in the layout read by the cluster client (redis-py's
:class:`~redis.cluster.RedisCluster`). What differs from one server:

* client-side tracking for ``get_version`` per node
  (:class:`ClusterVersions`): a version is read over a tracking connection
  to the node that owns its slot, so each node pushes the invalidations of
  its own keys. A slot that moved answers ``MOVED``: that read goes through
  the cluster client, which learns the new layout.
* the barrier after a write of ``T:meta`` (create, ``write_state``) is a
  ``PING`` to the node that owns the instance's slot: the invalidations of
  that write are on that node's connections. A worker's commit has none
  (as on one server, nobody waits on it but through a call of their own to
  that node, e.g. ``pending``), and the worker's process forgets the
  version itself.
* scripts run on a direct per-thread connection to their node
  (:mod:`~tidal.stores.redis.direct`, one per node), found from the
  cluster client's layout; a redirection goes back through the client.
* several instances' pushes in one enqueue go one call each, to each
  instance's node: redis-py refuses scripts in a cluster pipeline. Plain
  commands (``list_instances``, ``queue_stats``) still share a pipeline,
  which redis-py splits by node.
* a script missing from a node's script cache (a node restarted, a
  replica promoted) is loaded on that node only: redis-py would load it on
  every primary, and fail while one of them is down.
* no command is retried after a connection error, as on one server (see
  :mod:`~tidal.stores.redis.direct`): a failed call raises
  :class:`~tidal.exceptions.StoreError`, and makes the client read the
  cluster's layout again for the next one. Redirections (``MOVED``,
  ``ASK``: the command did not run) are followed as usual.

When a master dies and its replica takes over (a failover):

* until the replica is promoted, each call on the dead master's slots
  raises :class:`~tidal.exceptions.StoreError` (connection refused; or,
  from a host that vanished, a timeout: give the URL
  ``socket_connect_timeout`` and ``socket_timeout``, or such a call waits
  as long as TCP does). Calls on the other masters' slots go on, but with
  Redis's default ``cluster-require-full-coverage yes`` only until the
  nodes agree that the master failed (after ``cluster-node-timeout``):
  from then until the promotion every node refuses every key.
* a claim passes over the instances of a dead node (their failed
  enqueues keep them at the head of the claim index), so that workers go
  on with the others'. The global slot (op ids, the claim index) is the
  exception: while its master is down, no enqueue and no claim can work.
* once the replica is promoted, the first call on its slots may still
  fail (its client read the layout before), and the one after it finds
  the new master. Nothing is to be reopened: an App, or a ``tidal
  worker``, goes on by itself (a worker logs each failed claim and claims
  again).
* replication is asynchronous: what the master acknowledged but had not
  sent to its replica when it died is lost with it, as with any client of
  Redis Cluster. An update is undone, a queued op disappears, or an op
  whose commit is lost runs again. The store does not wait for replicas.
  ``min-replicas-to-write`` (with ``min-replicas-max-lag``) makes a master
  refuse writes while no replica keeps up, which bounds the loss; ``WAIT``
  on the master after a write returns once a replica has it (the failover
  tests do that before they kill one), though Redis does not promise that
  the replica promoted is one that had it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import AskError, MovedError, NoScriptError, RedisClusterException
from redis.retry import Retry

from ...exceptions import ConfigError, StoreError
from .calls import Calls
from .connect import safe_url
from .direct import DirectScripts
from .two_step import TwoStepPaths
from .versions import VersionCache, Versions

log = logging.getLogger("tidal.stores.redis")

CLUSTER_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)
"""What a call on a cluster can fail with: a connection refused or timed
out, CLUSTERDOWN, or no node for its slot (which is no RedisError)."""


class ClusterPaths(TwoStepPaths):
    """The two-step paths over Redis Cluster (see the module docs)."""

    # A claim passes over an instance whose node fails (see TwoStepPaths.claim).
    candidate_errors = CLUSTER_ERRORS

    def __init__(self, calls: Calls, versions: Versions) -> None:
        super().__init__(calls, versions)
        # RedisCluster offers every command the store sends through its
        # client, each routed by its key; Calls types its client as
        # redis.Redis, which is what it is on one server.
        self.cluster = cast(RedisCluster, calls.client)

    def pipeline(self) -> Any:
        return None  # redis-py blocks EVALSHA in a cluster pipeline

    def run(self, script: Script, keys: list[Any], args: list[Any]) -> Any:
        # A cluster script goes direct to its key's node by itself (_ClusterScript).
        return script(keys=keys, args=args)

    def barrier(self, tag: str) -> None:
        """A round trip to the node of ``tag``'s slot (see the module docs)."""
        try:
            node = self.cluster.get_node_from_key(tag + ":meta")  # type: ignore[no-untyped-call]
            self.cluster.ping(target_nodes=node)
        except CLUSTER_ERRORS as exc:
            log.warning("Redis store %s: no reply after a commit: %s", safe_url(self.calls.url), exc)

    def after_claimed_commit(self, component: str, instance: str, tag: str, reply: Any) -> None:
        super().after_claimed_commit(component, instance, tag, reply)
        # No barrier: the settle went to the global slot's node, not this
        # instance's (see the module docs). The worker's process forgets the
        # version itself.
        self.versions.forget((tag + ":meta").encode())

    def close(self) -> None:
        # RedisCluster.close() closes each node's client, but a client made
        # from a URL does not own its node's pool, so the pool's connections
        # stayed open until garbage collection closed them (with a
        # ResourceWarning, when a socket went before its connection).
        cluster: Any = self.cluster  # get_nodes() is untyped
        for node in cluster.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()


class ClusterVersions:
    """The versions ``get_version`` read on a cluster: one
    :class:`~tidal.stores.redis.versions.VersionCache` (a tracking
    connection and what it was told) per node, each key looked up in the
    cache of the node that owns its slot now."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._nodes: dict[str, VersionCache] = {}
        self._lock = threading.Lock()

    def get(self, key: bytes) -> bytes | None:
        node = self._client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        cache = self._nodes.get(node.name)
        if cache is None:
            with self._lock:
                cache = self._nodes.setdefault(node.name, VersionCache(node.redis_connection))
        try:
            return cache.get(key)
        except (MovedError, AskError):
            # The slot moved since the layout was read: the cluster client
            # follows the redirection and learns the new layout.
            return cast(bytes | None, self._client.hget(key, "v"))

    def forget(self, key: bytes) -> None:
        for cache in list(self._nodes.values()):
            cache.forget(key)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        for cache in list(self._nodes.values()):
            cache.after_fork_in_child()

    def close(self) -> None:
        with self._lock:
            nodes, self._nodes = self._nodes, {}
        for cache in nodes.values():
            cache.close()


class _ClusterScript(Script):
    """A script run on the node of its first key's slot, over that node's
    :class:`~tidal.stores.redis.direct.DirectScripts` (a connection of the
    calling thread's own: the cluster client's routing, pool and retry
    layers cost ~3x the script's round trip in Python). When its node lacks
    it, it is loaded there only. A ``MOVED`` or ``ASK`` reply (the script
    did not run) hands the call to the cluster client, which follows the
    redirection and learns the new layout; a connection error makes the
    client read the layout afresh (a failover, say) before it is raised."""

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        keys, args = list(keys or ()), list(args or ())
        client = client if client is not None else self.registered_client
        if not keys:  # the client would send it to a random node
            raise RedisClusterException("a script on Redis Cluster must declare a key of the slot it works on")
        node = client.get_node_from_key(keys[0])
        try:
            return client.direct(node)(self, keys, args)
        except (MovedError, AskError):
            pass
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            with contextlib.suppress(redis.RedisError, RedisClusterException):
                client.nodes_manager.initialize(last_failed_node_name=node.name)
            raise
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:  # not run: safe to send again
            node = client.get_node_from_key(keys[0])
            self.sha = client.execute_command("SCRIPT LOAD", self.script, target_nodes=node)
            return client.evalsha(self.sha, len(keys), *keys, *args)


class _Client(RedisCluster):
    """The cluster client, with a :class:`DirectScripts` per node."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._directs: dict[str, DirectScripts] = {}
        self._directs_lock = threading.Lock()

    def register_script(self, script: Any) -> Script:
        return _ClusterScript(self, script)

    def direct(self, node: Any) -> DirectScripts:
        """The direct script path to ``node`` (a :class:`~redis.cluster.ClusterNode`)."""
        direct = self._directs.get(node.name)
        if direct is None:
            with self._directs_lock:
                direct = self._directs.setdefault(node.name, DirectScripts(node.redis_connection))
        return direct

    def close(self) -> None:
        with self._directs_lock:
            directs, self._directs = list(self._directs.values()), {}
        for direct in directs:
            direct.close()
        super().close()


def connect_cluster(url: str) -> RedisCluster:
    """A cluster client for ``url`` (any node), with no retries; it reads
    the cluster's slot layout now, so an unreachable cluster, or a server
    that is no cluster, raises :class:`StoreError` here."""
    try:
        return _Client.from_url(url, retry=Retry(NoBackoff(), 0))
    except ValueError as exc:
        raise ConfigError(f"bad Redis Cluster store URL {safe_url(url)!r}: {exc}") from exc
    except (redis.RedisError, RedisClusterException) as exc:
        raise StoreError(f"cannot open the Redis Cluster at {safe_url(url)!r}: {exc}") from exc
