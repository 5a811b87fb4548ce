"""The Redis store on Redis Cluster: ``redis://host:port/0?cluster=1`` (any
node of the cluster; ``rediss://`` for TLS, with ``ssl_ca_certs`` and the
other parameters for redis-py going to the connections to every node),
opened by :meth:`RedisStore.from_url <tidal.stores.redis.RedisStore.from_url>`.

The keys and scripts are those of the one-server store in its single-slot
mode (``?cluster=1`` implies ``single_slot=1``, and refuses
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
  (:mod:`~tidal.stores.redis_direct`, one per node), found from the
  cluster client's layout; a redirection goes back through the client.
* several instances' pushes in one enqueue go one call each, to each
  instance's node: redis-py refuses scripts in a cluster pipeline. Plain
  commands (``list_instances``, ``queue_stats``) still share a pipeline,
  which redis-py splits by node.
* a script missing from a node's script cache (a node restarted, a
  replica promoted) is loaded on that node only: redis-py would load it on
  every primary, and fail while one of them is down.
* no command is retried after a connection error, as on one server (see
  the store's module docs): a failed call raises
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
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import AskError, MovedError, NoScriptError, RedisClusterException
from redis.retry import Retry

from ..exceptions import ConfigError, StoreError
from .redis import DEFAULT_NAMESPACE, RedisStore, log
from .redis_direct import DirectScripts
from .redis_names import _safe
from .redis_versions import VersionCache


class RedisClusterStore(RedisStore):
    """The Redis store on a Redis Cluster (see the module docs)."""

    # A claim passes over an instance whose node fails (see _claim_in_two_steps):
    # a connection refused or timed out, CLUSTERDOWN, no node for its slot.
    _candidate_errors = (redis.RedisError, RedisClusterException)

    def __init__(self, url: str, *, namespace: str = DEFAULT_NAMESPACE, client: RedisCluster) -> None:
        # RedisCluster offers every command the store sends through its
        # client, each routed by its key; the store types its client as
        # redis.Redis, which is what it is on one server.
        super().__init__(url, namespace=namespace, client=cast(redis.Redis, client), single_slot=True)
        self._versions = cast(VersionCache, ClusterVersions(client))

    @classmethod
    def open(cls, url: str, client_url: str, *, namespace: str, single_slot: bool | None) -> RedisClusterStore:
        """The store of ``url``, whose query asked for ``cluster=1``;
        ``client_url`` is the URL without the store's own parameters."""
        if single_slot is False:
            raise ConfigError(
                f"store URL {_safe(url)!r} asks for cluster=1 and single_slot=0, but on Redis Cluster every "
                "script must keep to one hash slot; drop single_slot (cluster=1 implies it)"
            )
        return cls(url, namespace=namespace, client=connect_cluster(client_url))

    @classmethod
    def from_url(cls, url: str) -> RedisClusterStore:
        store = RedisStore.from_url(url)
        if not isinstance(store, RedisClusterStore):
            store.close()
            raise ConfigError(f"store URL {_safe(url)!r} names no cluster; add cluster=1 to its query")
        return store

    def __repr__(self) -> str:
        return f"<RedisClusterStore {_safe(self.url)}>"

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        # RedisCluster.close() closes each node's client, but a client made
        # from a URL does not own its node's pool, so the pool's connections
        # stayed open until garbage collection closed them (with a
        # ResourceWarning, when a socket went before its connection).
        cluster: Any = self._client  # a RedisCluster, whose get_nodes() is untyped
        for node in cluster.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()

    @contextmanager
    def _io(self) -> Iterator[None]:
        with super()._io():
            try:
                yield
            except RedisClusterException as exc:  # not a RedisError: no node reachable, no slot owner...
                raise StoreError(f"Redis Cluster store {_safe(self.url)} failed: {exc}") from exc

    def _hint(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            super()._hint(command, *args, **kwargs)
        except RedisClusterException as exc:  # a hint, as on one server: logged, never raised
            log.warning("Redis store %s: could not update the claim index: %s", _safe(self.url), exc)

    def _barrier(self, tag: str) -> None:
        """A round trip to the node of ``tag``'s slot (see the module docs)."""
        try:
            node = self.client.get_node_from_key(tag + ":meta")  # type: ignore[attr-defined]
            self.client.ping(target_nodes=node)
        except (redis.RedisError, RedisClusterException) as exc:
            log.warning("Redis store %s: no reply after a commit: %s", _safe(self.url), exc)

    def commit(self, component: str, instance: str, changes: Mapping[str, bytes], **kwargs: Any) -> int:
        version = super().commit(component, instance, changes, **kwargs)
        if kwargs.get("claim") is not None:  # a worker's commit: no barrier (see the module docs)
            self._versions.forget((self._tag(component, instance) + ":meta").encode())
        return version

    def _script_pipeline(self) -> Any:
        return None  # redis-py blocks EVALSHA in a cluster pipeline


class ClusterVersions:
    """The versions ``get_version`` read on a cluster: one
    :class:`~tidal.stores.redis_versions.VersionCache` (a tracking
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

    def close(self) -> None:
        with self._lock:
            nodes, self._nodes = self._nodes, {}
        for cache in nodes.values():
            cache.close()


class _ClusterScript(Script):
    """A script run on the node of its first key's slot, over that node's
    :class:`~tidal.stores.redis_direct.DirectScripts` (a connection of the
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
        raise ConfigError(f"bad Redis Cluster store URL {_safe(url)!r}: {exc}") from exc
    except (redis.RedisError, RedisClusterException) as exc:
        raise StoreError(f"cannot open the Redis Cluster at {_safe(url)!r}: {exc}") from exc
