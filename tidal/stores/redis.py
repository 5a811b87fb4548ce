"""The scale-out store: state, queues, leases and cache in Redis
(``redis://[:password@]host:port/db``, ``rediss://`` for TLS), shared by
every process on every machine that points at it.

Query parameters other than the store's own (``namespace``,
``single_slot``, ``cluster``) go to redis-py, and from its pool to every
connection the store opens (the hot path's and the version cache's too):
over TLS, ``?ssl_ca_certs=/path/to/ca.pem`` names the CA that signed the
server's certificate (else the system's CAs must have; a certificate that
does not verify fails each call with :class:`StoreError`).

Keys, under a namespace (``tidal`` unless the URL says ``?namespace=…``) so
that several apps can share a server. Names inside keys are escaped
(``%`` ``:`` ``{`` ``}`` as ``%25`` ``%3A`` ``%7B`` ``%7D``) so that no two
instances' keys can coincide. Times are milliseconds of the Redis server's
clock, read with ``TIME`` inside the scripts, so client clocks never matter.

Per instance, all in the hash slot of the tag ``T = {ns:component:instance}``::

    T:meta         HASH  v: version, c / u: created / updated ms.
                         Exists iff the instance does: get_version is one HGET,
                         and none while the server has not said the key
                         changed since (client-side tracking, see _Versions).
    T:vals         HASH  key -> value bytes (live keys only)
    T:vers         ZSET  key -> version it was last written or deleted at; a
                         key here but not in T:vals is a deletion (tombstone),
                         so read_state(since) is one ZRANGEBYSCORE
    T:at           HASH  key -> ms it was last written or deleted at
    T:h:<key>      LIST  the key's earlier versions, newest first, at most
                         ``history_versions``: "version:ms:=value", or
                         "version:ms:-" for a deletion
    T:lease        HASH  t: token, x: expiry ms
    T:q            ZSET  ids of pending ops (queued or running), score = id
    T:q:<flow>     ZSET  the same, of one flow: pending(flow=, upto=) and the
                         backlog a claim counts are one ZCOUNT each
    T:f, T:f:<flow> ZSET ids of failed ops, all and per flow
    T:flows        SET   flows ever queued (to find T:q:<flow> on delete)
    T:op:<id>      HASH  f: flow, p: payload, t: enqueued ms, n: attempts,
                         e: error, x: failed ms.  Deleted when the op is done
                         (a failed op keeps it, payload included, until it is
                         retried or dropped).
    T:m            STR   push watermark: the highest op id pushed (or fenced);
                         a push of lower ids is refused
    T:dd           ZSET  dedupe key -> expiry ms, of ops pushed here (the set
                         expires with its last key)

Global, in the hash slot of the tag ``G = {ns}``::

    G:ids                  STR   op id counter (INCR): ids only grow
    G:ready:<component>    ZSET  instance -> head op id, of every instance that
                                 may have pending ops: what claim looks at
    G:alloc:<component>    HASH  instance -> "id:ms", the last op id allocated
                                 to it and when
    G:leased:<component>   ZSET  instance -> lease expiry ms: a hint that lets
                                 claim skip held instances without asking them
    G:instances:<component> SET  instance ids (a superset: checked on listing)
    G:dedupe:<key>         STR   owner "component:instance", with the dedupe ttl

Cache entries are ``ns:cache:<key>`` strings with a Redis TTL and no hash
tag, so that they spread over a cluster's slots.

With ``single_slot`` on (``?single_slot=1`` in the URL), no script
touches two slots, and each declares a key of the slot it works on (so that
a cluster client routes it there); the store's design thus fits Redis
Cluster, which ``?cluster=1`` opens (it implies ``single_slot=1``; see
:mod:`~tidal.stores.redis_cluster` for what differs there). On one server
(the default) the steps below that take two scripts run as one script that
touches both slots (``redis_lua_one``):
enqueue, claim and a worker's commit are then one round trip each, and
the crash windows between the steps do not exist. Both kinds keep the same
keys and rules, so processes of either kind can share a server; the
contract suite runs against both.
What each two-step verb does, and the crash windows between its steps, is
described in :mod:`~tidal.stores.redis_two_step`.

Connections, and why no call is retried: see :mod:`~tidal.stores.redis_direct`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from ..exceptions import ConfigError, LeaseLostError, StoreError, VersionConflictError
from . import redis_lua as lua
from . import redis_lua_one as one
from . import redis_lua_ops as ops
from .base import Claim, ClaimedOp, Failure, NewOp, StateRead, Store
from .redis_direct import DirectScripts
from .redis_names import _escape, _ms, _safe
from .redis_operators import OperatorVerbs
from .redis_two_step import CLAIM_CANDIDATES, CLAIM_ROUNDS, ENQUEUE_STRIPES, FENCE_AFTER_MS, TwoStepPaths
from .redis_versions import VersionCache

log = logging.getLogger("tidal.stores.redis")

DEFAULT_NAMESPACE = "tidal"
"""Prefix of every key, unless the URL names another with ``?namespace=``."""

ENQUEUE_NAMES_CACHED = 10_000
"""Instances whose enqueue keys a store keeps formatted (all dropped when full)."""


class RedisStore(TwoStepPaths, OperatorVerbs, Store):
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
        self.single_slot = single_slot
        """True: every script keeps to the keys of one hash slot, as Redis
        Cluster requires (enqueue and a worker's commit then take two round
        trips). False, for one server: one script each."""
        self._client = client if client is not None else _connect(url)
        self._closed = False
        self._stripes = [threading.Lock() for _ in range(ENQUEUE_STRIPES)]
        self._enqueue_names: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        self._global = "{" + _escape(namespace) + "}"
        self._ids_key = self._global + ":ids"
        self._cache_prefix = _escape(namespace).encode() + b":cache:"
        self._versions = VersionCache(self._client)
        self._direct = DirectScripts(self._client)
        register = self._client.register_script
        self._enqueue_global = register(lua.GLOBAL_ENQUEUE)
        self._candidates = register(lua.GLOBAL_CANDIDATES)
        self._settle = register(lua.GLOBAL_SETTLE)
        self._enqueue_one = register(one.ONE_SERVER_ENQUEUE)
        self._commit_settle = register(one.ONE_SERVER_COMMIT)
        self._claim_one_server = register(one.ONE_SERVER_CLAIM)
        self._push = register(lua.INSTANCE_PUSH)
        self._claim = register(lua.INSTANCE_CLAIM)
        self._commit = register(lua.INSTANCE_COMMIT)
        self._renew = register(lua.INSTANCE_RENEW)
        self._release = register(lua.INSTANCE_RELEASE)
        self._create = register(lua.INSTANCE_CREATE)
        self._read = register(lua.INSTANCE_READ)
        self._delete = register(lua.INSTANCE_DELETE)
        self._last_op = register(lua.INSTANCE_LAST_OP)
        self._failures = register(ops.INSTANCE_FAILURES)
        self._describe = register(ops.INSTANCE_DESCRIBE)
        self._history = register(ops.INSTANCE_HISTORY)
        self._retry = register(ops.INSTANCE_RETRY)
        self._drop_failed = register(ops.INSTANCE_DROP_FAILED)

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        namespace = DEFAULT_NAMESPACE
        flags: dict[str, bool] = {}
        rest = []
        for key, value in query:
            if key == "namespace":
                if not value:
                    raise ConfigError(f"empty namespace in store URL {_safe(url)!r}")
                namespace = value
            elif key in ("single_slot", "cluster"):
                if value not in ("0", "1"):
                    raise ConfigError(f"{key} in store URL {_safe(url)!r} must be 0 or 1, not {value!r}")
                flags[key] = value == "1"
            else:
                rest.append((key, value))  # for redis-py: ssl_ca_certs, socket_timeout, ...
        client_url = urlunsplit(parts._replace(query=urlencode(rest)))
        if flags.get("cluster"):
            from .redis_cluster import RedisClusterStore

            return RedisClusterStore.open(url, client_url, namespace=namespace, single_slot=flags.get("single_slot"))
        return cls(url, namespace=namespace, client=_connect(client_url), single_slot=flags.get("single_slot", False))

    def __repr__(self) -> str:
        return f"<RedisStore {_safe(self.url)}>"

    # -- plumbing ---------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        """The redis-py client (for tests and operators)."""
        if self._closed:
            raise StoreError(f"cannot use {_safe(self.url)}, as the store has been closed")
        return self._client

    @contextmanager
    def _io(self) -> Iterator[None]:
        if self._closed:
            raise StoreError(f"cannot use {_safe(self.url)}, as the store has been closed")
        try:
            yield
        except redis.RedisError as exc:
            raise StoreError(f"Redis store {_safe(self.url)} failed: {exc}") from exc

    def _tag(self, component: str, instance: str) -> str:
        return "{" + f"{_escape(self.namespace)}:{_escape(component)}:{_escape(instance)}" + "}"

    def _g(self, kind: str, component: str) -> str:
        return f"{self._global}:{kind}:{_escape(component)}"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._versions.close()
            self._direct.close()
            self._client.close()

    # -- state ------------------------------------------------------------

    def get_version(self, component: str, instance: str) -> int | None:
        key = (self._tag(component, instance) + ":meta").encode()
        with self._io():
            raw = self._versions.get(key)
        return None if raw is None else int(raw)

    def read_state(self, component: str, instance: str, since: int = 0) -> StateRead | None:
        t = self._tag(component, instance)
        with self._io():
            got = self._read(keys=[t + ":meta", t + ":vals", t + ":vers"], args=[since])
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
        t = self._tag(component, instance)
        args: list[Any] = [len(values)]
        for k, v in values.items():
            args += [k, v]
        with self._io():
            # Listed first: a process that dies in between leaves a listed
            # instance that does not exist (list_instances checks), never an
            # existing one that is not listed.
            self._client.sadd(self._g("instances", component), instance)
            created, version = self._create(keys=[t + ":meta", t + ":vals", t + ":vers", t + ":at"], args=args)
        if created:
            self._barrier(t)
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
        failed: Sequence[Failure] = (),
        expected_version: int | None = None,
        bump: int = 1,
    ) -> int:
        t = self._tag(component, instance)
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
            args += [len(claim.op_ids), *claim.op_ids, len(failed)]
            for f in failed:
                args += [f.op_id, f.error]
        keys = [t + ":meta", t + ":vals", t + ":vers", t + ":lease", t + ":q", t + ":f", t + ":m", t + ":at"]
        settled = claim is not None and not self.single_slot
        with self._io():
            if settled:
                # Commit and claim index in one script. No barrier is needed
                # after it: nobody waits on a worker's commit but through a
                # call of their own (pending ops, a read) that the server
                # answers after it flushed the commit's invalidations.
                keys += [self._g("ready", component), self._g("alloc", component), self._g("leased", component)]
                got = self._direct(self._commit_settle, keys, [*args, instance])
            else:
                got = self._commit(keys=keys, args=args)
            code = int(got[0])
            if code == -1:
                raise LeaseLostError(
                    f"lease on {component}/{instance} was lost (expired or taken over); "
                    "its ops will be (or were) run by another worker"
                )
            if code == -2:
                raise StoreError(f"no instance {component}/{instance} in {_safe(self.url)}")
            if code == -3:
                raise VersionConflictError(
                    f"{component}/{instance} is at version {int(got[1])}, expected {expected_version}"
                )
        if settled:
            # Our own invalidation may still be on its way: read the version
            # afresh next time rather than serve the cached one meanwhile.
            self._versions.forget((t + ":meta").encode())
        elif claim is not None:  # a round trip after the commit: the barrier too
            self._settle_ready(component, instance, head=int(got[1]), watermark=int(got[2]), unlease=True)
        else:
            self._barrier(t)
        return code

    def _barrier(self, tag: str) -> None:
        """One round trip after a write of ``tag``'s ``T:meta``, so that it
        returns only once the server has written the invalidations of that
        write to every tracking connection (see
        :class:`~tidal.stores.redis_versions.VersionCache`)."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            log.warning("Redis store %s: no reply after a commit: %s", _safe(self.url), exc)

    def _settle_ready(self, component: str, instance: str, *, head: int, watermark: int, unlease: bool) -> None:
        keys = [self._g("ready", component), self._g("alloc", component), self._g("leased", component)]
        self._hint(self._settle, keys=keys, args=[instance, head, watermark, "1" if unlease else "0"])

    def _hint(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Update G:ready or a lease hint. They are hints, tidied up by later
        claims, so a failure here must not undo what the instance's own
        script did (a commit, a lease granted)."""
        try:
            command(*args, **kwargs)
        except redis.RedisError as exc:
            log.warning("Redis store %s: could not update the claim index: %s", _safe(self.url), exc)

    # -- queue ------------------------------------------------------------

    def enqueue(self, component: str, instance: str, flow: str, payload: bytes) -> int:
        if not self.single_slot:  # the hot path of every run() that queues an update
            keys, head = self._one_instance_names(component, instance)
            with self._io():
                result = self._direct(self._enqueue_one, keys, [*head, 1, flow, payload, "", 0])
            return int(result[0])
        op_id = self.enqueue_many([NewOp(component, instance, flow, payload)])[0]
        assert op_id is not None  # no dedupe key, so never skipped
        return op_id

    def _one_instance_names(self, component: str, instance: str) -> tuple[list[str], list[str]]:
        """Keys and leading arguments of ONE_SERVER_ENQUEUE for an instance
        (cached: escaping and formatting them cost more than the call's
        other Python work)."""
        got = self._enqueue_names.get((component, instance))
        if got is None:
            t = self._tag(component, instance)
            comp = _escape(component)
            keys = [self._ids_key, t + ":m", t + ":q", t + ":flows", t + ":dd"]
            got = (keys, [self._global, t, comp, instance, f"{comp}:{_escape(instance)}"])
            if len(self._enqueue_names) >= ENQUEUE_NAMES_CACHED:
                self._enqueue_names.clear()
            self._enqueue_names[(component, instance)] = got
        return got

    def enqueue_many(self, ops: Sequence[NewOp]) -> list[int | None]:
        if not self.single_slot and len({(op.component, op.instance) for op in ops}) == 1:
            with self._io():  # one script: atomic, so no turns to take
                return self._enqueue_one_instance(ops)
        return self._enqueue_in_rounds(ops)

    def _enqueue_one_instance(self, ops: Sequence[NewOp]) -> list[int | None]:
        """Ops of one instance, on one server: allocated, checked for
        repeats, queued and indexed by one script."""
        keys, head = self._one_instance_names(ops[0].component, ops[0].instance)
        args: list[Any] = [*head, len(ops)]
        for op in ops:
            args += [op.flow, op.payload, op.dedupe if op.dedupe is not None else "", round(op.dedupe_ttl * 1000)]
        result = self._direct(self._enqueue_one, keys, args)
        return [int(op_id) or None for op_id in result]

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
        escaped = [_escape(c) for c in components]
        with self._io():
            if not self.single_slot:
                return self._claim_on_one_server(components, escaped, lease_seconds, max_ops, count_newer)
            return self._claim_in_two_steps(components, escaped, lease_seconds, max_ops, count_newer)

    def _claim_on_one_server(
        self, components: list[str], escaped: list[str], lease_seconds: float, max_ops: int, count_newer: bool
    ) -> Claim | None:
        """Candidates, claim, index upkeep and lease hint in one script."""
        for _ in range(CLAIM_ROUNDS):
            token = uuid.uuid4().hex
            args: list[Any] = [self._global, CLAIM_CANDIDATES, _escape(self.namespace), token, _ms(lease_seconds)]
            args += [max_ops, "1" if count_newer else "0", FENCE_AFTER_MS, *escaped]
            got = self._direct(self._claim_one_server, [self._ids_key], args)
            if int(got[0]) < 0:
                if int(got[1]) < CLAIM_CANDIDATES:
                    return None
                continue  # every candidate was held: their hints are fixed, look again
            component, instance = components[int(got[0])], got[1].decode()
            claim = self._claimed(component, instance, token, got[4:], others_waiting=int(got[2]) > 1)
            if claim is not None:
                claim.version = int(got[3]) or None
                return claim
        return None

    def _claimed(
        self, component: str, instance: str, token: str, got: list[Any], *, others_waiting: bool = True
    ) -> Claim | None:
        """The claim an INSTANCE_CLAIM reply grants (None for code 1: nothing
        queued), after logging the malformed ops it reports."""
        first = 3 + 2 * int(got[2])
        for k in range(3, first, 2):
            log.warning(
                "Redis store %s: %s/%s: %s (recorded as failed)",
                _safe(self.url),
                component,
                instance,
                got[k + 1].decode(errors="replace"),
            )
        if int(got[0]) != 2:
            return None
        ops = [
            ClaimedOp(
                id=int(got[k]),
                flow=got[k + 1].decode(errors="replace"),
                payload=got[k + 2],
                enqueued_at=int(got[k + 3]) / 1000,
                attempts=int(got[k + 4]),
                newer_same_flow=int(got[k + 5]),
            )
            for k in range(first, len(got), 6)
        ]
        return Claim(component, instance, token, ops, int(got[1]) / 1000, others_waiting=others_waiting)

    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        t = self._tag(claim.component, claim.instance)
        with self._io():
            expires = int(self._renew(keys=[t + ":lease"], args=[claim.token, _ms(lease_seconds)]))
            if not expires:
                return False
            # xx: only while the hint is there; a commit that dropped it
            # meanwhile must not see it come back.
            self._hint(self._client.zadd, self._g("leased", claim.component), {claim.instance: expires}, xx=True)
        claim.expires_at = expires / 1000
        return True

    def release(self, claim: Claim) -> None:
        t = self._tag(claim.component, claim.instance)
        with self._io():
            if self._release(keys=[t + ":lease"], args=[claim.token]):
                self._hint(self._client.zrem, self._g("leased", claim.component), claim.instance)

    # -- cache ------------------------------------------------------------

    def cache_get(self, key: bytes) -> bytes | None:
        with self._io():
            return cast(bytes | None, self._client.get(self._cache_prefix + key))

    def cache_set(self, key: bytes, value: bytes, ttl: float) -> None:
        with self._io():
            if ttl * 1000 < 1:
                self._client.delete(self._cache_prefix + key)
            else:
                self._client.set(self._cache_prefix + key, value, px=_ms(ttl))


def _connect(url: str) -> redis.Redis:
    try:
        return redis.Redis.from_url(url)
    except ValueError as exc:
        raise ConfigError(f"bad Redis store URL {_safe(url)!r}: {exc}") from exc
