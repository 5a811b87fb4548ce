"""Rewriting the state of many instances of a component with one function."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..constants import COMMIT_RETRIES
from ..core.component import ComponentSpec
from ..exceptions import InitStateError, VersionConflictError

if TYPE_CHECKING:
    from .runtime import Runtime

MigrateFn = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class MigrationResult:
    """Outcome for one instance: ``exception`` is None when it migrated."""

    instance_id: str
    exception: BaseException | None = None


def migrate(
    runtime: Runtime,
    component: ComponentSpec,
    migrate_fn: MigrateFn,
    instance_ids: Iterable[str] | None = None,
    num_workers: int = 4,
) -> list[MigrationResult]:
    """Apply ``migrate_fn`` to the given instances (all of the component's
    when empty), ``num_workers`` at a time; one result per instance, in order."""
    ids = list(instance_ids or []) or runtime.store.list_instances(component.name)

    def one(instance_id: str) -> MigrationResult:
        try:
            migrate_instance(runtime, component, migrate_fn, instance_id)
        except Exception as exc:
            return MigrationResult(instance_id, exc)
        return MigrationResult(instance_id)

    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        return list(pool.map(one, ids))


def migrate_instance(runtime: Runtime, component: ComponentSpec, migrate_fn: MigrateFn, instance_id: str) -> None:
    """Migrate one instance in one atomic commit that also removes the keys
    the new state no longer has; an update committed meanwhile makes it start
    again from the newer state."""
    layout = runtime.layout(component)
    encode = runtime.encoder(component, instance_id)
    for _ in range(COMMIT_RETRIES):
        snap = runtime.snapshot(component, instance_id)
        state = layout.update_state(snap.raw_items, runtime.decoder(component.name, instance_id), instance_id).copy()
        new_state = migrate_fn(state)
        if not isinstance(new_state, dict):
            raise InitStateError(f"migrate_fn must return the new state as a dict, got {type(new_state).__name__}")
        changes = layout.encode_initial(new_state, encode)
        deleted = [k for k in snap.raw_items if k not in changes]
        try:
            runtime.store.commit(component.name, instance_id, changes, deleted=deleted, expected_version=snap.version)
        except VersionConflictError:
            continue
        runtime.forget(component, instance_id)
        return
    raise VersionConflictError(f"{component.name}/{instance_id} kept changing during migration")
