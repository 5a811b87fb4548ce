"""StateMigrator: rewrite the state of many instances with one function."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..constants import COMMIT_RETRIES
from ..core.component import Component
from ..exceptions import DefinitionError, InitStateError, VersionConflictError


@dataclass(frozen=True)
class MigrationResult:
    """Outcome for one instance: ``exception`` is None when it migrated."""

    instance_id: str
    exception: BaseException | None = None


class StateMigrator:
    """Apply ``migrate_fn(state) -> new state`` to instances of a component.

    Each instance is migrated in one atomic commit that also removes keys the
    new state no longer has; an update committed meanwhile makes the
    migration of that instance start again from the newer state::

        results = StateMigrator(Prefs, lambda s: {**s, "tags": []}).migrate()
    """

    def __init__(self, component: Component, migrate_fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        if not isinstance(component, Component):
            raise TypeError(f"component must be a Component, got {type(component).__name__}")
        params = inspect.signature(migrate_fn).parameters
        if len(params) != 1:
            raise DefinitionError(f"migrate_fn must take exactly one argument (state), it takes {list(params)}")
        self.component = component
        self.migrate_fn = migrate_fn

    def migrate(self, instance_ids: Iterable[str] | None = None, num_workers: int = 4) -> list[MigrationResult]:
        """Migrate the given instances (all of the component's when empty);
        one result per instance, in order."""
        app = self.component.app
        ids = list(instance_ids or []) or app.store.list_instances(self.component.name)
        with ThreadPoolExecutor(max(1, num_workers)) as pool:
            return list(pool.map(self._one, ids))

    def _one(self, instance_id: str) -> MigrationResult:
        try:
            self._migrate(instance_id)
        except Exception as exc:
            return MigrationResult(instance_id, exc)
        return MigrationResult(instance_id)

    def _migrate(self, instance_id: str) -> None:
        comp = self.component
        app = comp.app
        layout = app.layout(comp)
        encode = app.encoder(comp, instance_id)
        for _ in range(COMMIT_RETRIES):
            snap = app.snapshot(comp, instance_id)
            state = layout.update_state(snap.raw_items, app.decode, instance_id).copy()
            new_state = self.migrate_fn(state)
            if not isinstance(new_state, dict):
                raise InitStateError(f"migrate_fn must return the new state as a dict, got {type(new_state).__name__}")
            changes = layout.encode_initial(new_state, encode)
            deleted = [k for k in snap.raw_items if k not in changes]
            try:
                app.store.commit(comp.name, instance_id, changes, deleted=deleted, expected_version=snap.version)
            except VersionConflictError:
                continue
            app.forget(comp, instance_id)
            return
        raise VersionConflictError(f"{comp.name}/{instance_id} kept changing during migration")
