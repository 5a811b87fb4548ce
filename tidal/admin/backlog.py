"""Queues of update ops: depth and lag per component, what one instance
has waiting, and failed ops listed, queued again or dropped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from ..engine.freshness import Freshness, freshness
from ..exceptions import FailedOp, NotFoundError
from .common import AsDict, check_component, check_instance

if TYPE_CHECKING:
    from ..app import App


@dataclass(frozen=True)
class RetryResult(AsDict):
    """A failed op queued again as ``new_op_id``."""

    component: str
    instance: str
    op_id: int
    new_op_id: int


@dataclass(frozen=True)
class InstanceQueue(AsDict):
    """What one instance has waiting: pending ops, and failed ops oldest first."""

    component: str
    instance: str
    pending: int
    failed: list[FailedOp]


def queues(app: App, comps: list[str] | None = None, window: timedelta = timedelta(minutes=5)) -> list[Freshness]:
    """Queue depth, failures and update lag per component (see
    :func:`tidal.freshness.freshness`)."""
    for name in comps or []:
        if name not in app.components:
            check_component(app, name)
    return freshness(app, comps, window)


def failures(
    app: App, comp: str, *, instance: str | None = None, flow: str | None = None, limit: int | None = 100
) -> list[FailedOp]:
    """Failed ops of ``comp`` (of one instance, of one flow), newest first."""
    if instance is not None:
        check_instance(app, comp, instance)
    else:
        check_component(app, comp)
    return [f for f in app.store.list_failures(comp, instance=instance, flow=flow, limit=limit)]


def instance_queue(app: App, comp: str, instance: str) -> InstanceQueue:
    """The pending ops and the failed ops (oldest first, as they happened) of one instance."""
    check_instance(app, comp, instance)
    pending = app.store.pending(comp, instance)
    failed = failures(app, comp, instance=instance, limit=None)
    failed.reverse()
    return InstanceQueue(comp, instance, pending, failed)


def _find_failure(app: App, comp: str, op_id: int, instance: str | None) -> str:
    found = app.store.list_failures(comp, instance=instance)
    for f in found:
        if f.op_id == op_id:
            return f.instance
    where = f"the failed ops of {comp}" + (f"/{instance}" if instance else "")
    raise NotFoundError("failed op", str(op_id), [str(f.op_id) for f in found], where=where)


def retry_failed(app: App, comp: str, op_id: int, *, instance: str | None = None) -> RetryResult:
    """Queue a failed op again (same flow and payload, a fresh id, at the
    tail of its instance's queue); a worker then runs it."""
    check_component(app, comp)
    owner = _find_failure(app, comp, op_id, instance)
    new_id = app.store.retry_failed(comp, owner, op_id)
    if new_id is None:  # retried or dropped by someone else meanwhile
        raise NotFoundError("failed op", str(op_id), where=f"the failed ops of {comp}/{owner}")
    app.notify_enqueued()
    return RetryResult(comp, owner, op_id, new_id)


def drop_failed(app: App, comp: str, op_id: int, *, instance: str | None = None) -> FailedOp:
    """Forget a failed op; returns it as it was."""
    check_component(app, comp)
    owner = _find_failure(app, comp, op_id, instance)
    kept = next(f for f in app.store.failures(comp, owner) if f.op_id == op_id)
    if not app.store.drop_failed(comp, owner, op_id):
        raise NotFoundError("failed op", str(op_id), where=f"the failed ops of {comp}/{owner}")
    return FailedOp(kept.op_id, comp, owner, kept.flow, kept.error, kept.failed_at)
