"""The scale-out store: state, queues, leases and cache in Redis
(``redis://[:password@]host:port/db``, ``rediss://`` for TLS), shared by
every process on every machine that points at it.

The store's URL (:mod:`~tidal.stores.redis.connect`), its keys
(:mod:`~tidal.stores.redis.keys`) and scripts
(:mod:`~tidal.stores.redis.lua`) are the same on one server and on a
cluster. What differs is how enqueue, claim and a worker's commit travel:
the store picks its :class:`~tidal.stores.redis.paths.Paths` once, when it
opens. On one server (the default) they are one script and one round trip
each (:mod:`~tidal.stores.redis.one_server`); with ``?single_slot=1`` no
script touches two hash slots, and those verbs take two steps each
(:mod:`~tidal.stores.redis.two_step`), as Redis Cluster requires, which
``?cluster=1`` opens (:class:`RedisClusterStore`, implying
``single_slot=1``; see :mod:`~tidal.stores.redis.cluster` for what else
differs there).

Connections, and why no call is retried: see :mod:`~tidal.stores.redis.direct`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import redis
from redis.cluster import RedisCluster

from ...exceptions import ConfigError, FailedOp, LeaseLostError, StoreError, VersionConflictError
from ..base import Claim, KeyInfo, KeyVersion, NewOp, QueueStats, StateRead, Store
from ..rates import check_rate
from .calls import Calls
from .cluster import CLUSTER_ERRORS, ClusterPaths, ClusterVersions, connect_cluster
from .connect import DEFAULT_NAMESPACE, connect, parse_url, safe_url
from .keys import KeyNames, escape, to_ms
from .one_server import OneServerPaths
from .operators import OperatorVerbs
from .paths import Paths
from .two_step import TwoStepPaths
from .versions import VersionCache, Versions


class RedisStore(Store):
    """State, queue and cache on a Redis server (or cluster)."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        client: redis.Redis | None = None,
        single_slot: bool = False,
    ) -> None:
        self.url = url
        self.namespace = namespace
        client = client if client is not None else connect(url)
        self.keys = KeyNames(namespace)
        # The one choice of topology: the paths below (and the version
        # cache) are all that differs between one server, single-slot mode
        # and a cluster.
        calls: Calls
        versions: Versions
        paths: Paths
        if isinstance(client, RedisCluster):
            calls = Calls(url, cast(redis.Redis, client), self.keys, errors=CLUSTER_ERRORS)
            versions = ClusterVersions(client)
            paths = ClusterPaths(calls, versions)
        else:
            calls = Calls(url, client, self.keys, errors=(redis.RedisError,))
            versions = VersionCache(client)
            paths = (TwoStepPaths if single_slot else OneServerPaths)(calls, versions)
        self.calls = calls
        self.versions = versions
        self.paths = paths
        self.scripts = self.calls.scripts
        self.operators = OperatorVerbs(self.calls)

    @property
    def single_slot(self) -> bool:
        """True: every script keeps to the keys of one hash slot, as Redis
        Cluster requires (enqueue and a worker's commit then take two round
        trips). False, for one server: one script each."""
        return self.paths.single_slot

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        asked = parse_url(url)
        if asked.cluster:
            namespace, single_slot = asked.namespace, asked.single_slot
            return RedisClusterStore.open(url, asked.client_url, namespace=namespace, single_slot=single_slot)
        client = connect(asked.client_url)
        return cls(url, namespace=asked.namespace, client=client, single_slot=bool(asked.single_slot))

    def __repr__(self) -> str:
        return f"<RedisStore {safe_url(self.url)}>"

    @property
    def client(self) -> redis.Redis:
        """The redis-py client (for tests and operators)."""
        if self.calls.closed:
            raise StoreError(f"cannot use {safe_url(self.url)}, as the store has been closed")
        return self.calls.client

    def close(self) -> None:
        if not self.calls.closed:
            self.calls.closed = True
            self.versions.close()
            self.calls.direct.close()
            self.calls.client.close()
            self.paths.close()

    def after_fork_in_child(self) -> None:
        # Nothing of the parent's is closed here: its sockets are the
        # parent's too. redis-py's pools start afresh in a new process on
        # their next use (they check the pid), but a lock of theirs held at
        # the fork by a thread of the parent would stay held here: reset
        # them now. A cluster client's per-node pools check the pid on use.
        self.calls.after_fork_in_child()
        self.versions.after_fork_in_child()
        self.paths.after_fork_in_child()

    # -- state ------------------------------------------------------------

    def get_version(self, component: str, instance: str) -> int | None:
        key = (self.keys.tag(component, instance) + ":meta").encode()
        with self.calls.io():
            raw = self.versions.get(key)
        return None if raw is None else int(raw)

    def read_state(self, component: str, instance: str, since: int = 0) -> StateRead | None:
        t = self.keys.tag(component, instance)
        with self.calls.io():
            got = self.scripts.instance_read(keys=[t + ":meta", t + ":vals", t + ":vers"], args=[since])
        if got is None:
            return None
        version, flat = int(got[0]), got[1]
        changed: dict[str, bytes] = {}
        deleted: list[str] = []
        for k, v in zip(flat[::2], flat[1::2], strict=True):
            if v is None:
                deleted.append(k.decode())
            else:
                changed[k.decode()] = v
        return StateRead(version, changed, tuple(deleted) if since > 0 else ())

    def create_instance(self, component: str, instance: str, values: Mapping[str, bytes]) -> tuple[bool, int]:
        t = self.keys.tag(component, instance)
        args: list[Any] = [len(values)]
        for k, v in values.items():
            args += [k, v]
        with self.calls.io():
            # Listed first: a process that dies in between leaves a listed
            # instance that does not exist (list_instances checks), never an
            # existing one that is not listed.
            self.calls.client.sadd(self.keys.of_component("instances", component), instance)
            keys = [t + ":meta", t + ":vals", t + ":vers", t + ":at"]
            created, version = self.scripts.instance_create(keys=keys, args=args)
        if created:
            self.paths.barrier(t)
        return bool(created), int(version)

    def commit(
        self,
        component: str,
        instance: str,
        changes: Mapping[str, bytes],
        *,
        deleted: Iterable[str] = (),
        claim: Claim | None = None,
        done: Sequence[int] = (),
        failed: Mapping[int, str] | None = None,
        expected_version: int | None = None,
        bump: int = 1,
    ) -> int:
        t = self.keys.tag(component, instance)
        deleted = tuple(deleted)
        args: list[Any] = [
            t,
            "1" if claim is not None else "0",
            claim.token if claim is not None else "",
            "" if expected_version is None else expected_version,
            bump,
            self.history_versions,
            len(changes),
        ]
        for k, v in changes.items():
            args += [k, v]
        args += [len(deleted), *deleted]
        if claim is not None:
            failures = failed or {}
            args += [len(claim.op_ids), *claim.op_ids, len(failures)]
            for op_id, error in failures.items():
                args += [op_id, error]
        keys = [t + ":meta", t + ":vals", t + ":vers", t + ":lease", t + ":q", t + ":f", t + ":m", t + ":at"]
        with self.calls.io():
            if claim is not None:
                got = self.paths.commit_claimed(component, instance, keys, args)
            else:
                got = self.scripts.instance_commit(keys=keys, args=args)
            code = int(got[0])
            if code == -1:
                raise LeaseLostError(
                    f"lease on {component}/{instance} was lost (expired or taken over); "
                    "its ops will be (or were) run by another worker"
                )
            if code == -2:
                raise StoreError(f"no instance {component}/{instance} in {safe_url(self.url)}")
            if code == -3:
                raise VersionConflictError(
                    f"{component}/{instance} is at version {int(got[1])}, expected {expected_version}"
                )
        if claim is not None:
            self.paths.after_claimed_commit(component, instance, t, got)
        else:
            self.paths.barrier(t)
        return code

    # -- queue ------------------------------------------------------------

    def enqueue(self, component: str, instance: str, flow: str, payload: bytes) -> int:
        return self.paths.enqueue(component, instance, flow, payload)

    def enqueue_many(self, ops: Sequence[NewOp]) -> list[int | None]:
        return self.paths.enqueue_many(ops)

    def claim(
        self,
        components: Sequence[str],
        owner: str,
        lease_seconds: float,
        max_ops: int,
        *,
        count_newer: bool = True,
    ) -> Claim | None:
        if not components or max_ops < 1:
            return None
        components = list(dict.fromkeys(components))
        escaped = [escape(c) for c in components]
        with self.calls.io():
            return self.paths.claim(components, escaped, lease_seconds, max_ops, count_newer)

    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        t = self.keys.tag(claim.component, claim.instance)
        calls = self.calls
        with calls.io():
            expires = int(self.scripts.instance_renew(keys=[t + ":lease"], args=[claim.token, to_ms(lease_seconds)]))
            if not expires:
                return False
            # xx: only while the hint is there; a commit that dropped it
            # meanwhile must not see it come back.
            leased = self.keys.of_component("leased", claim.component)
            calls.hint(calls.client.zadd, leased, {claim.instance: expires}, xx=True)
        claim.expires_at = expires / 1000
        return True

    def release(self, claim: Claim) -> None:
        t = self.keys.tag(claim.component, claim.instance)
        calls = self.calls
        with calls.io():
            if self.scripts.instance_release(keys=[t + ":lease"], args=[claim.token]):
                calls.hint(calls.client.zrem, self.keys.of_component("leased", claim.component), claim.instance)

    # -- cache ------------------------------------------------------------

    def cache_get(self, key: bytes) -> bytes | None:
        with self.calls.io():
            return cast(bytes | None, self.calls.client.get(self.keys.cache_prefix + key))

    def cache_set(self, key: bytes, value: bytes, ttl: float) -> None:
        with self.calls.io():
            if ttl * 1000 < 1:
                self.calls.client.delete(self.keys.cache_prefix + key)
            else:
                self.calls.client.set(self.keys.cache_prefix + key, value, px=to_ms(ttl))

    # -- rate limits ------------------------------------------------------

    def rate_take(self, bucket: str, amount: float, limit: float, period: float) -> float:
        check_rate(amount, limit, period)
        # Microseconds of the server's clock (see rate_take.lua); floats
        # travel as repr(), exactly.
        args = [float(amount), float(limit), float(period) * 1e6]
        with self.calls.io():
            wait_us = self.paths.run(self.scripts.rate_take, [self.keys.rate(bucket)], args)
        return int(wait_us) / 1e6

    # -- off the hot path: see operators.py --------------------------------

    def list_instances(self, component: str) -> list[str]:
        return self.operators.list_instances(component)

    def delete_instance(self, component: str, instance: str) -> None:
        self.operators.delete_instance(component, instance)

    def describe_state(self, component: str, instance: str) -> list[KeyInfo] | None:
        return self.operators.describe_state(component, instance)

    def key_history(self, component: str, instance: str, key: str, limit: int | None = None) -> list[KeyVersion]:
        return self.operators.key_history(component, instance, key, limit)

    def pending(self, component: str, instance: str, *, flow: str | None = None, upto: int | None = None) -> int:
        return self.operators.pending(component, instance, flow=flow, upto=upto)

    def last_op_id(self, component: str, instance: str, *, flow: str | None = None) -> int:
        return self.operators.last_op_id(component, instance, flow=flow)

    def failures(
        self, component: str, instance: str, *, flow: str | None = None, after: int = 0, upto: int | None = None
    ) -> list[FailedOp]:
        return self.operators.failures(component, instance, flow=flow, after=after, upto=upto)

    def list_failures(
        self, component: str, *, instance: str | None = None, flow: str | None = None, limit: int | None = None
    ) -> list[FailedOp]:
        return self.operators.list_failures(component, instance=instance, flow=flow, limit=limit)

    def retry_failed(self, component: str, instance: str, op_id: int) -> int | None:
        return self.operators.retry_failed(component, instance, op_id)

    def drop_failed(self, component: str, instance: str, op_id: int) -> bool:
        return self.operators.drop_failed(component, instance, op_id)

    def queue_stats(self, components: Sequence[str]) -> dict[str, QueueStats]:
        return self.operators.queue_stats(components)


class RedisClusterStore(RedisStore):
    """The Redis store on a Redis Cluster (see :mod:`~tidal.stores.redis.cluster`)."""

    def __init__(self, url: str, *, namespace: str = DEFAULT_NAMESPACE, client: RedisCluster) -> None:
        super().__init__(url, namespace=namespace, client=cast(redis.Redis, client))

    @classmethod
    def open(cls, url: str, client_url: str, *, namespace: str, single_slot: bool | None) -> RedisClusterStore:
        """The store of ``url``, whose query asked for ``cluster=1``;
        ``client_url`` is the URL without the store's own parameters."""
        if single_slot is False:
            raise ConfigError(
                f"store URL {safe_url(url)!r} asks for cluster=1 and single_slot=0, but on Redis Cluster every "
                "script must keep to one hash slot; drop single_slot (cluster=1 implies it)"
            )
        return cls(url, namespace=namespace, client=connect_cluster(client_url))

    @classmethod
    def from_url(cls, url: str) -> RedisClusterStore:
        store = RedisStore.from_url(url)
        if not isinstance(store, RedisClusterStore):
            store.close()
            raise ConfigError(f"store URL {safe_url(url)!r} names no cluster; add cluster=1 to its query")
        return store

    def __repr__(self) -> str:
        return f"<RedisClusterStore {safe_url(self.url)}>"
