"""Discard policies for update ops under back-pressure."""

from __future__ import annotations

import time
from enum import Enum

from ..exceptions import DefinitionError


class DiscardPolicy(Enum):
    """When a queued update op may be dropped instead of run.

    ``NONE`` runs every op. ``NUM_NEW_UPDATES`` drops an op once
    ``discard_after`` newer ops of the same flow are queued behind it (only the
    newest ``discard_after`` stay). ``SECONDS`` drops an op that has waited
    more than ``discard_after`` seconds.
    """

    NONE = 0
    NUM_NEW_UPDATES = 1
    SECONDS = 2


def validate_policy(policy: DiscardPolicy, discard_after: float | None, where: str) -> None:
    """Raise :class:`DefinitionError` for an inconsistent policy definition."""
    if not isinstance(policy, DiscardPolicy):
        raise DefinitionError(f"{where}: discard_policy must be a DiscardPolicy, got {policy!r}")
    if policy is DiscardPolicy.NONE:
        if discard_after is not None:
            raise DefinitionError(f"{where}: discard_after must be None with DiscardPolicy.NONE")
        return
    if discard_after is None or discard_after <= 0:
        raise DefinitionError(f"{where}: discard_after must be a number > 0 with {policy}, got {discard_after!r}")


def should_discard(
    policy: DiscardPolicy,
    discard_after: float | None,
    *,
    enqueued_at: float,
    newer_same_flow: int,
    now: float | None = None,
) -> bool:
    """Whether an op with this age and backlog is to be dropped."""
    if policy is DiscardPolicy.NONE or discard_after is None:
        return False
    if policy is DiscardPolicy.NUM_NEW_UPDATES:
        return newer_same_flow >= discard_after
    return (now if now is not None else time.time()) - enqueued_at > discard_after
