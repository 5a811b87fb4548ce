"""What every part of the Redis store calls through: the client, the key
names, the registered scripts and the per-thread direct path, with the
errors of a call turned into :class:`~tidal.exceptions.StoreError`; and the
claim index hints, whose failure is only logged."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from ...exceptions import StoreError
from .connect import safe_url
from .direct import DirectScripts
from .keys import KeyNames
from .lua import Scripts

log = logging.getLogger("tidal.stores.redis")


class Calls:
    """The shared plumbing of one store (its verbs, its paths and its
    operator verbs all hold the same one)."""

    def __init__(self, url: str, client: redis.Redis, keys: KeyNames, *, errors: tuple[type[Exception], ...]) -> None:
        self.url = url
        self.client = client
        self.keys = keys
        self.errors = errors
        """What a failed call raises: redis-py's errors, and on a cluster
        those of its routing too (which are no RedisError)."""
        self.scripts = Scripts(client)
        self.direct = DirectScripts(client)
        self.closed = False

    def after_fork_in_child(self) -> None:
        """In a forked child: a new pool for the client (its connections
        and lock are the parent's) and new direct connections."""
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None and getattr(pool, "pid", None) != os.getpid():
            if hasattr(pool, "_fork_lock"):  # held at the fork by a parent's thread: never released here
                pool._fork_lock = threading.Lock()
            pool.reset()
        self.direct.after_fork_in_child()

    @contextmanager
    def io(self) -> Iterator[None]:
        """Around each verb's calls: refuses a closed store, and raises what
        failed as a StoreError."""
        if self.closed:
            raise StoreError(f"cannot use {safe_url(self.url)}, as the store has been closed")
        try:
            yield
        except self.errors as exc:
            raise StoreError(f"Redis store {safe_url(self.url)} failed: {exc}") from exc

    def hint(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Update G:ready or a lease hint. They are hints, tidied up by later
        claims, so a failure here must not undo what the instance's own
        script did (a commit, a lease granted)."""
        try:
            command(*args, **kwargs)
        except self.errors as exc:
            log.warning("Redis store %s: could not update the claim index: %s", safe_url(self.url), exc)

    def settle_ready(self, component: str, instance: str, *, head: int, watermark: int, unlease: bool) -> None:
        """Point the instance's G:ready entry at its head op (or drop it) and
        drop its lease hint if asked: ``global_settle.lua``, as a hint."""
        of = self.keys.of_component
        keys = [of("ready", component), of("alloc", component), of("leased", component)]
        args = [instance, head, watermark, "1" if unlease else "0"]
        self.hint(self.scripts.global_settle, keys=keys, args=args)
