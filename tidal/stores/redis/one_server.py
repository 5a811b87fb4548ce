"""The Redis store's paths on one server (not a cluster), the default: each
runs what takes two single-slot scripts of
:mod:`~tidal.stores.redis.two_step` as one script (``one_server_*.lua``)
that touches keys of two hash slots, on the calling thread's direct
connection (:mod:`~tidal.stores.redis.direct`). They keep every key and
rule of the two-step scripts, so that processes using either kind can share
a server: a round trip less per enqueued op, per claim and per worker
commit, and the crash windows between the two steps do not exist."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

from ...config import redis_enqueue_names_cached
from ...lru import LRU
from ..base import Claim, NewOp
from .calls import Calls
from .keys import escape, to_ms
from .paths import claim_from_reply
from .two_step import CLAIM_CANDIDATES, CLAIM_ROUNDS, FENCE_AFTER_MS, TwoStepPaths
from .versions import Versions


class OneServerPaths(TwoStepPaths):
    """Enqueue, claim and a worker's commit as one script each. An enqueue of
    several instances' ops still takes the two steps."""

    single_slot = False

    def __init__(self, calls: Calls, versions: Versions, *, names_cached: int | None = None) -> None:
        super().__init__(calls, versions)
        self.enqueue_names: LRU[tuple[str, str], tuple[list[str], list[str]]] = LRU(
            names_cached if names_cached is not None else redis_enqueue_names_cached()
        )
        """Enqueue keys and arguments per instance, formatted once; the least
        recently used dropped past its ``limit``
        (:data:`~tidal.constants.REDIS_ENQUEUE_NAMES_CACHED`)."""
        self._names_lock = threading.Lock()

    def after_fork_in_child(self) -> None:
        self._names_lock = threading.Lock()

    def enqueue(self, component: str, instance: str, flow: str, payload: bytes) -> int:
        # The hot path of every run() that queues an update.
        keys, head = self._instance_names(component, instance)
        calls = self.calls
        with calls.io():
            result = calls.direct(calls.scripts.one_server_enqueue, keys, [*head, 1, flow, payload, "", 0])
        return int(result[0])

    def enqueue_many(self, ops: Sequence[NewOp]) -> list[int | None]:
        if len({(op.component, op.instance) for op in ops}) != 1:
            return super().enqueue_many(ops)
        # Ops of one instance: allocated, checked for repeats, queued and
        # indexed by one script (atomic, so no turns to take).
        keys, head = self._instance_names(ops[0].component, ops[0].instance)
        args: list[Any] = [*head, len(ops)]
        for op in ops:
            args += [op.flow, op.payload, op.dedupe if op.dedupe is not None else "", round(op.dedupe_ttl * 1000)]
        calls = self.calls
        with calls.io():
            result = calls.direct(calls.scripts.one_server_enqueue, keys, args)
        return [int(op_id) or None for op_id in result]

    def _instance_names(self, component: str, instance: str) -> tuple[list[str], list[str]]:
        """Keys and leading arguments of ``one_server_enqueue.lua`` for an
        instance (cached: escaping and formatting them cost more than the
        call's other Python work)."""
        got = self.enqueue_names.get((component, instance))
        if got is None:
            names = self.calls.keys
            t = names.tag(component, instance)
            keys = [names.ids, t + ":m", t + ":q", t + ":flows", t + ":dd"]
            got = (keys, [names.global_tag, t, escape(component), instance, names.owner(component, instance)])
            with self._names_lock:
                self.enqueue_names.put((component, instance), got)
        return got

    def claim(
        self, components: list[str], escaped: list[str], lease_seconds: float, max_ops: int, count_newer: bool
    ) -> Claim | None:
        """Candidates, claim, index upkeep and lease hint in one script."""
        calls, names = self.calls, self.calls.keys
        for _ in range(CLAIM_ROUNDS):
            token = uuid.uuid4().hex
            args: list[Any] = [names.global_tag, CLAIM_CANDIDATES, names.escaped_namespace, token]
            args += [to_ms(lease_seconds), max_ops, "1" if count_newer else "0", FENCE_AFTER_MS, *escaped]
            got = calls.direct(calls.scripts.one_server_claim, [names.ids], args)
            if int(got[0]) < 0:
                if int(got[1]) < CLAIM_CANDIDATES:
                    return None
                continue  # every candidate was held: their hints are fixed, look again
            component, instance = components[int(got[0])], got[1].decode()
            claim = claim_from_reply(calls.url, component, instance, token, got[4:], others_waiting=int(got[2]) > 1)
            if claim is not None:
                claim.version = int(got[3]) or None
                return claim
        return None

    def commit_claimed(self, component: str, instance: str, keys: list[str], args: list[Any]) -> Any:
        # Commit and claim index upkeep in one script. No barrier is needed
        # after it: nobody waits on a worker's commit but through a call of
        # their own (pending ops, a read) that the server answers after it
        # flushed the commit's invalidations.
        calls, of = self.calls, self.calls.keys.of_component
        keys = [*keys, of("ready", component), of("alloc", component), of("leased", component)]
        return calls.direct(calls.scripts.one_server_commit, keys, [*args, instance])

    def after_claimed_commit(self, component: str, instance: str, tag: str, reply: Any) -> None:
        # Our own invalidation may still be on its way: read the version
        # afresh next time rather than serve the cached one meanwhile.
        self.versions.forget((tag + ":meta").encode())
