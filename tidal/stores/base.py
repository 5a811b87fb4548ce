"""The store contract: everything Tidal keeps outside a process.

A store holds, per instance of a component, a versioned key/value state; a
FIFO queue of update ops with leases; and a cache of serve results. Every
verb is atomic. Per-instance ordering and fencing live here, in ``claim`` and
``commit``, and nowhere else:

* ``claim`` hands out the oldest ops of one instance whose lease is free, so
  one instance's ops run one batch at a time, in enqueue order, while other
  instances' ops go to other workers.
* ``commit`` writes the changed keys, bumps the version, and retires the
  claimed ops in one transaction, and only while the claim's lease is still
  held: a worker that lost its lease cannot commit, so an op that was re-run
  elsewhere is applied exactly once.

It also keeps the app's shared rate limits (``rate_take``), so that every
process of the app draws on one budget per bucket.

Each store implementation is checked by the one contract suite in
``tests/stores/test_contract.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .. import constants
from ..exceptions import FailedOp


@dataclass(frozen=True)
class StateRead:
    """State of an instance as of ``version``: the keys changed after the
    version asked for (all keys for a full read), and keys deleted since."""

    version: int
    changed: dict[str, bytes]
    deleted: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClaimedOp:
    """One queued update op handed to a worker."""

    id: int
    flow: str
    payload: bytes
    enqueued_at: float
    attempts: int
    """How often this op has been claimed, this claim included."""
    newer_same_flow: int
    """How many ops of the same instance and flow are queued after this one
    (what ``DiscardPolicy.NUM_NEW_UPDATES`` looks at)."""


@dataclass
class Claim:
    """A lease on the head of one instance's queue."""

    component: str
    instance: str
    token: str
    ops: list[ClaimedOp]
    expires_at: float
    others_waiting: bool = True
    """Whether, when this claim was made, other instances had ops waiting
    that a claim could have taken (True when the store cannot tell). The
    executor lingers after a small batch only when none did."""
    version: int | None = None
    """The instance's state version when the lease was granted, if the store
    read it in the same step (None: the worker reads it itself)."""
    op_ids: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.op_ids = tuple(op.id for op in self.ops)


@dataclass(frozen=True)
class QueueStats:
    """How far behind a component's updates are, as the queue shows it."""

    pending: int
    """Ops queued or running."""
    failed: int
    """Failed ops kept for inspection."""
    instances: int
    """Instances with at least one pending op."""
    oldest_enqueued_at: float | None
    """When the oldest pending op was queued (epoch seconds); None if none."""


@dataclass(frozen=True)
class NewOp:
    """An op to enqueue. With ``dedupe`` set, the op is enqueued only if no op
    with the same key was enqueued in the last ``dedupe_ttl`` seconds (so a
    trigger or schedule tick handed over twice still runs once)."""

    component: str
    instance: str
    flow: str
    payload: bytes
    dedupe: str | None = None
    dedupe_ttl: float = 7 * 86400.0


@dataclass(frozen=True)
class KeyInfo:
    """One live state key of an instance, as ``describe_state`` lists it."""

    key: str
    version: int
    """The state version the key was last written at."""
    size: int
    """Bytes of the stored (serialised) value."""
    written_at: float | None
    """When it was written (epoch seconds); None for keys written by a Tidal
    that did not record it."""


@dataclass(frozen=True)
class KeyVersion:
    """One version of one state key, as ``key_history`` lists it."""

    version: int
    """The state version this value was written at."""
    value: bytes | None
    """The stored bytes; None when the key was deleted at ``version``."""
    written_at: float | None


class Store(ABC):
    """Where state, queues and cache live. Pick one with
    :func:`tidal.stores.from_url`."""

    url: str = ""
    shared: bool = False
    """True when other processes can see this store (a file, a server)."""
    history_versions: int = constants.HISTORY_VERSIONS
    """Earlier versions kept per state key (0: none). Each commit moves the
    previous value of every key it writes or deletes into the key's history,
    in the same transaction, and drops the oldest beyond this many. The App
    sets it from ``Settings.history_versions``."""

    # -- state ------------------------------------------------------------

    @abstractmethod
    def get_version(self, component: str, instance: str) -> int | None:
        """The instance's current state version, None if it does not exist.
        Called on every serve, so it must be cheap."""

    @abstractmethod
    def read_state(self, component: str, instance: str, since: int = 0) -> StateRead | None:
        """Keys written after version ``since`` (all keys when 0), read
        consistently with the returned version. None if no such instance."""

    @abstractmethod
    def create_instance(self, component: str, instance: str, values: Mapping[str, bytes]) -> tuple[bool, int]:
        """Create the instance at version 1 with ``values`` unless it exists.
        Returns (created, current version)."""

    @abstractmethod
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
        """Atomically write ``changes``, drop ``deleted`` keys, advance the
        version by ``bump`` (when anything changed) and, with a ``claim``,
        retire its ops (``done`` and discarded ones are removed, ``failed``
        ones, op id -> traceback, kept with it) and release its lease. Returns the new
        version.

        Raises LeaseLostError if the claim's lease is no longer held,
        VersionConflictError if ``expected_version`` is not current, and
        StoreError if the instance does not exist. Nothing is written then."""

    @abstractmethod
    def describe_state(self, component: str, instance: str) -> list[KeyInfo] | None:
        """The live keys of an instance (sorted by key) with the version each
        was last written at, its size and when; None if no such instance.
        Reads no value."""

    @abstractmethod
    def key_history(self, component: str, instance: str, key: str, limit: int | None = None) -> list[KeyVersion]:
        """Versions of ``key``, newest first: the current one (a deletion
        when the key was deleted last) and then the earlier ones kept (see
        ``history_versions``); at most ``limit``. Empty if the instance or
        the key never existed."""

    @abstractmethod
    def list_instances(self, component: str) -> list[str]:
        """Ids of every instance of ``component``."""

    @abstractmethod
    def delete_instance(self, component: str, instance: str) -> None:
        """Remove an instance's state, queued ops and failures."""

    # -- queue ------------------------------------------------------------

    @abstractmethod
    def enqueue(self, component: str, instance: str, flow: str, payload: bytes) -> int:
        """Append an update op to the instance's queue; returns its id. Ids
        only grow, so an id says where an op stands in its queue."""

    @abstractmethod
    def enqueue_many(self, ops: Sequence[NewOp]) -> list[int | None]:
        """Enqueue several ops in one transaction, in order; each result is
        the op's id, or None when its dedupe key was already used."""

    @abstractmethod
    def claim(
        self,
        components: Sequence[str],
        owner: str,
        lease_seconds: float,
        max_ops: int,
        *,
        count_newer: bool = True,
    ) -> Claim | None:
        """Lease up to ``max_ops`` of the oldest runnable ops of one instance
        of one of ``components``: an instance whose lease is free or expired.
        Ops of an expired lease are handed out again (at-least-once).
        ``count_newer=False`` skips counting the backlog behind the batch
        (``ClaimedOp.newer_same_flow`` then counts only within the batch)."""

    @abstractmethod
    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        """Extend a held lease; False if it was already lost."""

    @abstractmethod
    def release(self, claim: Claim) -> None:
        """Give a lease back without running its ops (they stay queued)."""

    @abstractmethod
    def pending(self, component: str, instance: str, *, flow: str | None = None, upto: int | None = None) -> int:
        """How many ops (of ``flow``, with id <= ``upto``) are queued or running."""

    @abstractmethod
    def last_op_id(self, component: str, instance: str, *, flow: str | None = None) -> int:
        """The id of the latest op enqueued for the instance, 0 if none is
        pending or failed."""

    @abstractmethod
    def failures(
        self,
        component: str,
        instance: str,
        *,
        flow: str | None = None,
        after: int = 0,
        upto: int | None = None,
    ) -> list[FailedOp]:
        """Failed ops with ``after`` < id <= ``upto``, oldest first."""

    @abstractmethod
    def list_failures(
        self, component: str, *, instance: str | None = None, flow: str | None = None, limit: int | None = None
    ) -> list[FailedOp]:
        """Failed ops of every instance of ``component`` (or of one), the
        latest ``limit`` of them, newest first."""

    @abstractmethod
    def retry_failed(self, component: str, instance: str, op_id: int) -> int | None:
        """Atomically take a failed op off the failures and queue its flow
        and payload again at the tail of the instance's queue, under a fresh
        id; returns that id, or None if the op is not a failure of this
        instance. Raises StoreError if the store no longer has its payload."""

    @abstractmethod
    def drop_failed(self, component: str, instance: str, op_id: int) -> bool:
        """Forget a failed op; False if it is not a failure of this instance."""

    @abstractmethod
    def queue_stats(self, components: Sequence[str]) -> dict[str, QueueStats]:
        """Queue depth, failures and the oldest pending op of each component."""

    # -- cache ------------------------------------------------------------

    @abstractmethod
    def cache_get(self, key: bytes) -> bytes | None:
        """A cached value, None if absent or expired."""

    @abstractmethod
    def cache_set(self, key: bytes, value: bytes, ttl: float) -> None:
        """Cache ``value`` for ``ttl`` seconds."""

    # -- rate limits ------------------------------------------------------

    @abstractmethod
    def rate_take(self, bucket: str, amount: float, limit: float, period: float) -> float:
        """Take ``amount`` units (1 for a request, n for tokens) from
        ``bucket``, whose budget is ``limit`` units per ``period`` seconds,
        shared by every process that uses this store. Returns 0.0 when taken;
        else nothing is taken and it returns the seconds to wait before the
        same call could succeed (if nobody else takes meanwhile).

        The budget is a bucket of ``limit`` units refilled at ``limit /
        period`` a second: a full bucket grants ``limit`` at once, and over
        any ``t`` seconds a bucket grants at most ``limit * (1 + t / period)``
        (GCRA, see :mod:`tidal.stores.rates`). One atomic step of O(1) cost;
        a bucket left alone is forgotten once it is full again. A bucket
        holds no limit of its own: callers sharing it pass the same
        ``limit`` and ``period``. Times are the Redis server's clock on
        Redis, ``time.time()`` otherwise.

        Raises ValueError, naming the argument, when ``limit`` or ``period``
        is not positive, ``amount`` is negative, or ``amount`` is more than
        ``limit`` (it could never be taken)."""

    # -- lifecycle --------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the store is unusable afterwards."""

    def after_fork_in_child(self) -> None:  # noqa: B027 - optional hook
        """Called in a forked child (by the Runtime that holds the store,
        before anything else runs there): drop what belongs to the parent,
        its connections and the locks its threads may have held at the fork,
        without closing them (that would act on the parent's). The store
        then opens its own on next use. Idempotent."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
