"""How the Redis store's hot verbs travel, chosen once when a store opens:
:class:`~tidal.stores.redis.one_server.OneServerPaths` (the default: one
script, and one round trip, each for enqueue, claim and a worker's commit),
:class:`~tidal.stores.redis.two_step.TwoStepPaths` (``?single_slot=1``: every
script keeps to one hash slot, so those verbs take two steps) and
:class:`~tidal.stores.redis.cluster.ClusterPaths` (``?cluster=1``: the
two-step paths over Redis Cluster). Each kind keeps the same keys and rules,
so processes of either kind can share a server; the contract suite runs
against each."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

from ..base import Claim, ClaimedOp, NewOp
from .calls import Calls
from .connect import safe_url
from .versions import Versions

log = logging.getLogger("tidal.stores.redis")


class Paths(ABC):
    """Enqueue, claim, a worker's commit and the barrier after a write."""

    single_slot: bool
    """Whether every script keeps to the keys of one hash slot."""

    def __init__(self, calls: Calls, versions: Versions) -> None:
        self.calls = calls
        self.versions = versions

    @abstractmethod
    def enqueue(self, component: str, instance: str, flow: str, payload: bytes) -> int: ...

    @abstractmethod
    def enqueue_many(self, ops: Sequence[NewOp]) -> list[int | None]: ...

    @abstractmethod
    def claim(
        self, components: list[str], escaped: list[str], lease_seconds: float, max_ops: int, count_newer: bool
    ) -> Claim | None:
        """Called inside :meth:`Calls.io`, with ``components`` deduplicated
        and ``escaped`` as they appear in keys."""

    @abstractmethod
    def commit_claimed(self, component: str, instance: str, keys: list[str], args: list[Any]) -> Any:
        """Run a worker's commit (``instance_commit.lua``'s keys and
        arguments), inside :meth:`Calls.io`; its reply."""

    @abstractmethod
    def after_claimed_commit(self, component: str, instance: str, tag: str, reply: Any) -> None:
        """What follows a worker's commit that went through."""

    def run(self, script: Script, keys: list[Any], args: list[Any]) -> Any:
        """Run a single-slot script on the calling thread's direct
        connection (:mod:`~tidal.stores.redis.direct`), inside
        :meth:`Calls.io`; its reply."""
        return self.calls.direct(script, keys, args)

    def barrier(self, tag: str) -> None:
        """One round trip after a write of ``tag``'s ``T:meta``, so that it
        returns only once the server has written the invalidations of that
        write to every tracking connection (see
        :class:`~tidal.stores.redis.versions.VersionCache`)."""
        try:
            self.calls.client.ping()
        except redis.RedisError as exc:
            log.warning("Redis store %s: no reply after a commit: %s", safe_url(self.calls.url), exc)

    def after_fork_in_child(self) -> None:  # noqa: B027 - optional hook
        """In a forked child: new locks (a parent's thread may have held one
        at the fork)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Close what these paths opened beyond the client."""


def claim_from_reply(
    url: str, component: str, instance: str, token: str, got: list[Any], *, others_waiting: bool = True
) -> Claim | None:
    """The claim an ``instance_claim.lua`` reply grants (None for code 1:
    nothing queued), after logging the malformed ops it reports."""
    first = 3 + 2 * int(got[2])
    for k in range(3, first, 2):
        log.warning(
            "Redis store %s: %s/%s: %s (recorded as failed)",
            safe_url(url),
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
