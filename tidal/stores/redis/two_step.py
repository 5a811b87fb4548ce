"""The Redis store's two-step paths, used with ``single_slot`` (and so on
Redis Cluster): enqueue allocates ids with a script on the global slot, then
pushes them with one script per instance; a claim reads candidates, then
tries each instance with a script on its slot. On one server the store runs
each pair as one script instead (:mod:`~tidal.stores.redis.one_server`). In
two steps:

* **enqueue** is two scripts. A global one checks dedupe keys, allocates ids
  and adds the instance to ``G:ready`` (before any op exists, so an op can
  never sit in a queue that claim does not know of); then one per instance
  pushes the ops, refusing ids at or below the watermark (the caller then
  allocates fresh ids), which keeps each queue in id order. The instance's
  ``T:dd`` decides, in the push, whether a dedupe key was used already: so a
  process killed between the two steps leaves the key usable by the next
  hand-over of the same op, instead of losing it.
* **claim** reads up to ``CLAIM_CANDIDATES`` instances from ``G:ready``
  (oldest head op first, skipping those hinted as leased) in one call, then
  runs the claim script on each instance's own slot until one grants a lease.
  The winner hints the instance as leased until its lease expiry (``renew``
  moves the hint only while it is there), and its commit or release drops
  the hint; only the holder writes hints, so a late one can never hide an
  instance after its holder let go. An empty instance is dropped from
  ``G:ready`` once every id allocated to it is at or below its watermark
  (older allocations than ``FENCE_AFTER_MS`` are fenced first: a process
  that died before its push must not keep the entry alive). An op whose
  record is malformed (a field missing or garbled: written by something
  else than Tidal) is never handed out: the claim script takes it off the
  queue and records it as failed with the reason, which the claimer logs;
  a bad payload is the executor's to reject (recorded as failed likewise).
* **commit** checks lease and version, writes the keys, bumps the version
  and retires the claimed ops in one script; a second call points
  ``G:ready`` at the new head (or drops the instance) and drops the hint.
  A worker that dies between the two leaves a hint that expires with its
  lease and an entry the next claim tidies up: hints are never trusted,
  only the instance's own keys are.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from ...exceptions import StoreError
from ..base import Claim, NewOp
from .calls import Calls
from .connect import safe_url
from .keys import escape, to_ms
from .paths import Paths, claim_from_reply
from .versions import Versions

ENQUEUE_STRIPES = 64
"""Locks that the enqueueing threads of one process share, by instance."""

PUSH_ATTEMPTS = 100
"""How often enqueue allocates fresh ids for an instance whose watermark
moved past them (another process pushed newer ids first, or a fence)."""

CLAIM_CANDIDATES = 16
"""Instances one claim reads from ``G:ready`` at a time. Held instances are
skipped by their hint, so a few more than the busy workers is plenty."""

CLAIM_ROUNDS = 3
"""How often a claim reads candidates again when every one it tried was
taken meanwhile (each failure fixes a hint, so the next round sees others)."""

FENCE_AFTER_MS = 5_000
"""An op id allocated this long ago whose push has not arrived is taken for
lost (its process died between the two steps of enqueue): claim raises the
instance's watermark over it, so that the push is refused if it ever comes,
and drops the instance from ``G:ready``. Pushes take a round trip, so the
only cost of a large value is that such an entry is polled longer."""


class TwoStepPaths(Paths):
    """Enqueue, claim and a worker's commit in single-slot scripts."""

    single_slot = True

    candidate_errors: tuple[type[Exception], ...] = ()
    """Errors of the claim script on one candidate after which a claim tries
    the next candidate instead of failing: on Redis Cluster, those of a node
    that is down (see :meth:`claim`). None on one server, where every
    instance is on that server."""

    def __init__(self, calls: Calls, versions: Versions) -> None:
        super().__init__(calls, versions)
        self._stripes = [threading.Lock() for _ in range(ENQUEUE_STRIPES)]

    def after_fork_in_child(self) -> None:
        self._stripes = [threading.Lock() for _ in range(ENQUEUE_STRIPES)]

    def enqueue(self, component: str, instance: str, flow: str, payload: bytes) -> int:
        op_id = self.enqueue_many([NewOp(component, instance, flow, payload)])[0]
        assert op_id is not None  # no dedupe key, so never skipped
        return op_id

    def enqueue_many(self, ops: Sequence[NewOp]) -> list[int | None]:
        """Allocate and push ``ops`` (of any instances), allocating again for
        pushes refused by a watermark that moved past their ids."""
        out: list[int | None] = [None] * len(ops)
        todo = list(range(len(ops)))
        # Threads of this process enqueueing to one instance take turns, so
        # that their pushes arrive in id order and none is refused; other
        # processes can still overtake (and the refused push is redone).
        stripes = sorted({hash((op.component, op.instance)) % ENQUEUE_STRIPES for op in ops})
        with self.calls.io(), contextlib.ExitStack() as held:
            for stripe in stripes:
                held.enter_context(self._stripes[stripe])
            for _ in range(PUSH_ATTEMPTS):
                if not todo:
                    return out
                todo = self._enqueue_round(ops, todo, out)
        raise StoreError(f"could not enqueue {len(todo)} op(s) in {safe_url(self.calls.url)}: their queue kept moving")

    def _enqueue_round(self, ops: Sequence[NewOp], todo: list[int], out: list[int | None]) -> list[int]:
        """Allocate ids for ``ops[todo]`` and push them; returns the indexes
        whose push was refused (to allocate again)."""
        calls, names = self.calls, self.calls.keys
        args: list[Any] = [names.global_tag, len(todo)]
        for n in todo:
            op = ops[n]
            dedupe = op.dedupe if op.dedupe is not None else ""
            owner = names.owner(op.component, op.instance)
            args += [escape(op.component), op.instance, dedupe, round(op.dedupe_ttl * 1000), owner]
        ids = calls.scripts.global_enqueue(keys=[names.ids], args=args)
        groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for n, op_id in zip(todo, ids, strict=True):
            if op_id:
                groups.setdefault((ops[n].component, ops[n].instance), []).append((n, int(op_id)))
        if not groups:
            return []
        # One instance: one script call. Several: one pipelined round trip
        # (a pipeline costs an extra SCRIPT EXISTS, so not for one).
        pipe = self.pipeline() if len(groups) > 1 else None
        results = []
        for (component, instance), members in groups.items():
            t = names.tag(component, instance)
            push: list[Any] = [t, len(members)]
            for n, op_id in members:
                op = ops[n]
                dedupe = op.dedupe if op.dedupe is not None else ""
                push += [op_id, op.flow, op.payload, dedupe, round(op.dedupe_ttl * 1000)]
            keys = [t + ":m", t + ":q", t + ":flows", t + ":dd"]
            results.append(calls.scripts.instance_push(keys=keys, args=push, client=pipe))
        if pipe is not None:
            results = pipe.execute()
        again: list[int] = []
        for (component, instance), members, result in zip(groups, groups.values(), results, strict=True):
            if result[0] == -1:
                again += [n for n, _ in members]
                continue
            for (n, op_id), queued in zip(members, result[2:], strict=True):
                out[n] = op_id if queued else None
            if not any(result[2:]) and result[0] == 0:
                # Every op was a repeat and the queue is empty: take back the
                # G:ready entry the allocation made.
                calls.settle_ready(component, instance, head=0, watermark=int(result[1]), unlease=False)
        return sorted(again)

    def pipeline(self) -> Any:
        """A pipeline that several script calls can share (None: one call each)."""
        return self.calls.client.pipeline(transaction=False)

    def claim(
        self, components: list[str], escaped: list[str], lease_seconds: float, max_ops: int, count_newer: bool
    ) -> Claim | None:
        """Candidates from G:ready, then ``instance_claim.lua`` on each in
        turn, each script within one slot.

        A candidate whose claim fails with one of :attr:`candidate_errors`
        is passed over. Its node is down (a master died, and its replica has
        yet to take over), and the failed enqueues of its instances keep it
        at the head of ``G:ready``: failing there would hold up the
        instances of every other node too, until the failover. The error is
        raised when no other candidate is granted."""
        names = self.calls.keys
        failed: Exception | None = None
        for _ in range(CLAIM_ROUNDS):
            args: list[Any] = [names.global_tag, CLAIM_CANDIDATES, *escaped]
            flat = self.calls.scripts.global_candidates(keys=[names.ids], args=args)
            for k in range(0, len(flat), 4):
                component, instance = components[int(flat[k])], flat[k + 1].decode()
                alloc, age = int(flat[k + 2]), int(flat[k + 3])
                fence = alloc if age > FENCE_AFTER_MS else 0
                try:
                    got = self._try_claim(component, instance, lease_seconds, max_ops, count_newer, fence)
                except self.candidate_errors as exc:
                    failed = failed or exc
                    continue
                if got is not None:
                    got.others_waiting = len(flat) > 4
                    return got
            if len(flat) < 4 * CLAIM_CANDIDATES:
                break
        if failed is not None:
            raise failed
        return None

    def _try_claim(
        self, component: str, instance: str, lease_seconds: float, max_ops: int, count_newer: bool, fence: int
    ) -> Claim | None:
        calls = self.calls
        t = calls.keys.tag(component, instance)
        token = uuid.uuid4().hex
        args: list[Any] = [t, token, to_ms(lease_seconds), max_ops, "1" if count_newer else "0", fence]
        got = calls.scripts.instance_claim(keys=[t + ":lease", t + ":q", t + ":m", t + ":f", t + ":flows"], args=args)
        code = int(got[0])
        if code == 0:
            # Held by someone else. Not hinted from here: by the time the hint
            # landed, its holder might have committed and dropped its hint,
            # and this one would then hide a free instance until it expires.
            return None
        if code == 1:  # nothing queued: tidy G:ready up
            claim_from_reply(calls.url, component, instance, token, got)
            calls.settle_ready(component, instance, head=0, watermark=int(got[1]), unlease=False)
            return None
        # Ours: hinted before our own commit can drop the hint.
        calls.hint(calls.client.zadd, calls.keys.of_component("leased", component), {instance: int(got[1])})
        return claim_from_reply(calls.url, component, instance, token, got)

    def commit_claimed(self, component: str, instance: str, keys: list[str], args: list[Any]) -> Any:
        return self.calls.scripts.instance_commit(keys=keys, args=args)

    def after_claimed_commit(self, component: str, instance: str, tag: str, reply: Any) -> None:
        # A round trip after the commit: the barrier too.
        self.calls.settle_ready(component, instance, head=int(reply[1]), watermark=int(reply[2]), unlease=True)
