"""An in-process store: the reference implementation of the contract, and
the fastest choice for tests and single-process apps that need no persistence.

Layout (all under one lock, so every verb is atomic):

* ``_state[(component, instance)]``: ``_Instance(version, keys, history)``
  where ``keys[key] = (version written, bytes or None for a deleted key,
  written at)`` and ``history[key]`` holds the key's earlier such triples,
  newest first
* ``_queues[(component, instance)]``: list of pending ``_Op`` in id order
* ``_failed[(component, instance)]``: failed ops, kept for inspection
* ``_leases[(component, instance)]``: ``(token, expires_at)``
* ``_cache[key]``: ``(value, expires_at)``
* ``_rates[bucket]``: the bucket's GCRA time (:mod:`~tidal.stores.rates`);
  full buckets are purged every ``PURGE_EVERY`` takes
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..exceptions import FailedOp, LeaseLostError, StoreError, VersionConflictError
from .base import Claim, ClaimedOp, KeyInfo, KeyVersion, NewOp, QueueStats, StateRead, Store
from .rates import PURGE_EVERY, check_rate, gcra

Key = tuple[str, str]


_Entry = tuple[int, bytes | None, float]  # version written, bytes (None: deleted), written at


@dataclass
class _Instance:
    version: int
    keys: dict[str, _Entry] = field(default_factory=dict)
    history: dict[str, list[_Entry]] = field(default_factory=dict)

    def write(self, key: str, value: bytes | None, now: float, keep: int) -> None:
        old = self.keys.get(key)
        if old is not None and keep > 0:
            past = self.history.setdefault(key, [])
            past.insert(0, old)
            del past[keep:]
        self.keys[key] = (self.version, value, now)


@dataclass
class _Op:
    id: int
    flow: str
    payload: bytes
    enqueued_at: float
    attempts: int = 0


class MemoryStore(Store):
    """Everything in this process's memory; gone when it exits."""

    shared = False

    def __init__(self) -> None:
        self.url = "memory://"
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._state: dict[Key, _Instance] = {}
        self._queues: dict[Key, list[_Op]] = {}
        self._failed: dict[Key, list[FailedOp]] = {}
        self._failed_payloads: dict[int, bytes] = {}
        self._leases: dict[Key, tuple[str, float]] = {}
        self._cache: dict[bytes, tuple[bytes, float]] = {}
        self._dedupe: dict[str, float] = {}
        self._dedupe_purge_at = 1024
        self._rates: dict[str, float] = {}
        self._rate_takes = 0

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        return cls()

    # -- state ------------------------------------------------------------

    def get_version(self, component: str, instance: str) -> int | None:
        rec = self._state.get((component, instance))
        return rec.version if rec is not None else None

    def read_state(self, component: str, instance: str, since: int = 0) -> StateRead | None:
        with self._lock:
            rec = self._state.get((component, instance))
            if rec is None:
                return None
            changed = {k: v for k, (ver, v, _) in rec.keys.items() if ver > since and v is not None}
            deleted = tuple(k for k, (ver, v, _) in rec.keys.items() if ver > since and v is None)
            return StateRead(rec.version, changed, deleted if since else ())

    def create_instance(self, component: str, instance: str, values: Mapping[str, bytes]) -> tuple[bool, int]:
        with self._lock:
            rec = self._state.get((component, instance))
            if rec is not None:
                return False, rec.version
            now = time.time()
            self._state[(component, instance)] = _Instance(1, {k: (1, v, now) for k, v in values.items()})
            return True, 1

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
        key = (component, instance)
        deleted = tuple(deleted)
        with self._lock:
            rec = self._state.get(key)
            if rec is None:
                raise StoreError(f"no instance {component}/{instance} in {self.url}")
            if claim is not None:
                self._check_lease(key, claim)
            if expected_version is not None and rec.version != expected_version:
                raise VersionConflictError(
                    f"{component}/{instance} is at version {rec.version}, expected {expected_version}"
                )
            now = time.time()
            if changes or deleted:
                rec.version += max(bump, 1)
                keep = self.history_versions
                for k, v in changes.items():
                    rec.write(k, v, now, keep)
                for k in deleted:
                    if k in rec.keys:
                        rec.write(k, None, now, keep)
            if claim is not None:
                failures = dict(failed or {})
                retired = set(claim.op_ids)
                queue = self._queues.get(key, [])
                for op in queue:
                    if op.id in failures:
                        self._failed.setdefault(key, []).append(
                            FailedOp(op.id, component, instance, op.flow, failures[op.id], now)
                        )
                        self._failed_payloads[op.id] = op.payload
                self._queues[key] = [op for op in queue if op.id not in retired]
                del self._leases[key]
            return rec.version

    def _check_lease(self, key: Key, claim: Claim) -> None:
        lease = self._leases.get(key)
        if lease is None or lease[0] != claim.token or lease[1] <= time.time():
            raise LeaseLostError(
                f"lease on {key[0]}/{key[1]} was lost (expired or taken over); "
                "its ops will be (or were) run by another worker"
            )

    def describe_state(self, component: str, instance: str) -> list[KeyInfo] | None:
        with self._lock:
            rec = self._state.get((component, instance))
            if rec is None:
                return None
            return [KeyInfo(k, ver, len(v), at) for k, (ver, v, at) in sorted(rec.keys.items()) if v is not None]

    def key_history(self, component: str, instance: str, key: str, limit: int | None = None) -> list[KeyVersion]:
        with self._lock:
            rec = self._state.get((component, instance))
            if rec is None or key not in rec.keys:
                return []
            entries = [rec.keys[key], *rec.history.get(key, ())]
            return [KeyVersion(ver, v, at) for ver, v, at in entries[:limit]]

    def list_instances(self, component: str) -> list[str]:
        with self._lock:
            return sorted(i for c, i in self._state if c == component)

    def delete_instance(self, component: str, instance: str) -> None:
        key = (component, instance)
        with self._lock:
            for failed in self._failed.get(key, ()):
                self._failed_payloads.pop(failed.op_id, None)
            for table in (self._state, self._queues, self._failed, self._leases):
                table.pop(key, None)

    # -- queue ------------------------------------------------------------

    def enqueue(self, component: str, instance: str, flow: str, payload: bytes) -> int:
        with self._lock:
            op_id = next(self._ids)
            key = (component, instance)
            self._queues.setdefault(key, []).append(_Op(op_id, flow, payload, time.time()))
            return op_id

    def enqueue_many(self, ops: Sequence[NewOp]) -> list[int | None]:
        now = time.time()
        out: list[int | None] = []
        with self._lock:
            for op in ops:
                if op.dedupe is not None:
                    if self._dedupe.get(op.dedupe, 0.0) > now:
                        out.append(None)
                        continue
                    self._dedupe[op.dedupe] = now + op.dedupe_ttl
                    if len(self._dedupe) >= self._dedupe_purge_at:
                        # Forget expired keys, in amortised O(1) per key.
                        self._dedupe = {k: t for k, t in self._dedupe.items() if t > now}
                        self._dedupe_purge_at = max(1024, 2 * len(self._dedupe))
                op_id = next(self._ids)
                self._queues.setdefault((op.component, op.instance), []).append(_Op(op_id, op.flow, op.payload, now))
                out.append(op_id)
        return out

    def claim(
        self,
        components: Sequence[str],
        owner: str,
        lease_seconds: float,
        max_ops: int,
        *,
        count_newer: bool = True,
    ) -> Claim | None:
        now = time.time()
        wanted = set(components)
        with self._lock:
            best: Key | None = None
            best_id = 0
            runnable = 0
            for key, queue in self._queues.items():
                if not queue or key[0] not in wanted:
                    continue
                lease = self._leases.get(key)
                if lease is not None and lease[1] > now:
                    continue
                runnable += 1
                if best is None or queue[0].id < best_id:
                    best, best_id = key, queue[0].id
            if best is None:
                return None
            queue = self._queues[best]
            batch = queue[:max_ops]
            counts: dict[str, int] = {}
            for op in queue if count_newer else batch:
                counts[op.flow] = counts.get(op.flow, 0) + 1
            ops = []
            for op in batch:
                counts[op.flow] -= 1
                op.attempts += 1
                ops.append(ClaimedOp(op.id, op.flow, op.payload, op.enqueued_at, op.attempts, counts[op.flow]))
            token = uuid.uuid4().hex
            expires = now + lease_seconds
            self._leases[best] = (token, expires)
            return Claim(best[0], best[1], token, ops, expires, others_waiting=runnable > 1)

    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        key = (claim.component, claim.instance)
        with self._lock:
            lease = self._leases.get(key)
            if lease is None or lease[0] != claim.token or lease[1] <= time.time():
                return False
            claim.expires_at = time.time() + lease_seconds
            self._leases[key] = (claim.token, claim.expires_at)
            return True

    def release(self, claim: Claim) -> None:
        key = (claim.component, claim.instance)
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and lease[0] == claim.token:
                del self._leases[key]

    def pending(self, component: str, instance: str, *, flow: str | None = None, upto: int | None = None) -> int:
        with self._lock:
            queue = self._queues.get((component, instance), ())
            return sum(1 for op in queue if (flow is None or op.flow == flow) and (upto is None or op.id <= upto))

    def last_op_id(self, component: str, instance: str, *, flow: str | None = None) -> int:
        key = (component, instance)
        with self._lock:
            # Done ops are gone, as in every store: the latest pending or failed op.
            ids = [op.id for op in self._queues.get(key, ()) if flow is None or op.flow == flow]
            ids += [f.op_id for f in self._failed.get(key, ()) if flow is None or f.flow == flow]
            return max(ids, default=0)

    def failures(
        self,
        component: str,
        instance: str,
        *,
        flow: str | None = None,
        after: int = 0,
        upto: int | None = None,
    ) -> list[FailedOp]:
        with self._lock:
            return [
                f
                for f in self._failed.get((component, instance), ())
                if f.op_id > after and (upto is None or f.op_id <= upto) and (flow is None or f.flow == flow)
            ]

    def list_failures(
        self, component: str, *, instance: str | None = None, flow: str | None = None, limit: int | None = None
    ) -> list[FailedOp]:
        with self._lock:
            found = [
                f
                for (c, i), failed in self._failed.items()
                if c == component and (instance is None or i == instance)
                for f in failed
                if flow is None or f.flow == flow
            ]
        found.sort(key=lambda f: f.op_id, reverse=True)
        return found[:limit]

    def retry_failed(self, component: str, instance: str, op_id: int) -> int | None:
        key = (component, instance)
        with self._lock:
            failed = self._pop_failure(key, op_id)
            if failed is None:
                return None
            payload = self._failed_payloads.pop(op_id)
            new_id = next(self._ids)
            self._queues.setdefault(key, []).append(_Op(new_id, failed.flow, payload, time.time()))
            return new_id

    def drop_failed(self, component: str, instance: str, op_id: int) -> bool:
        with self._lock:
            if self._pop_failure((component, instance), op_id) is None:
                return False
            self._failed_payloads.pop(op_id, None)
            return True

    def _pop_failure(self, key: Key, op_id: int) -> FailedOp | None:
        failed = self._failed.get(key, [])
        for n, f in enumerate(failed):
            if f.op_id == op_id:
                return failed.pop(n)
        return None

    def queue_stats(self, components: Sequence[str]) -> dict[str, QueueStats]:
        with self._lock:
            out = {}
            for name in components:
                queues = [q for (c, _), q in self._queues.items() if c == name and q]
                failed = sum(len(f) for (c, _), f in self._failed.items() if c == name)
                oldest = min((q[0].enqueued_at for q in queues), default=None)
                out[name] = QueueStats(sum(len(q) for q in queues), failed, len(queues), oldest)
            return out

    # -- cache ------------------------------------------------------------

    def cache_get(self, key: bytes) -> bytes | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        if hit[1] <= time.time():
            self._cache.pop(key, None)
            return None
        return hit[0]

    def cache_set(self, key: bytes, value: bytes, ttl: float) -> None:
        self._cache[key] = (value, time.time() + ttl)

    # -- rate limits ------------------------------------------------------

    def rate_take(self, bucket: str, amount: float, limit: float, period: float) -> float:
        check_rate(amount, limit, period)
        with self._lock:
            now = time.time()
            tat, wait = gcra(self._rates.get(bucket), now, amount, limit, period)
            if not wait and tat > now:  # else the bucket is full: nothing to keep
                self._rates[bucket] = tat
            self._rate_takes += 1
            if self._rate_takes % PURGE_EVERY == 0:
                self._rates = {b: t for b, t in self._rates.items() if t > now}
            return wait
