"""Which variant each instance of an experiment gets, with promotions
(``experiment_pins``) applied, cached per instance: a serve of a component
with :class:`~tidal.core.variants.Variants` params pays a cache look-up, and
components without them pay nothing."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import relations
from ..constants import PINS_REFRESH_S, VARIANT_INSTANCES
from ..core.component import ComponentSpec
from ..core.variants import Variants
from ..lru import LRU

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("tidal.experiments")


def experiment_name(component: str, param: str) -> str:
    """An experiment's name: ``Component.param``."""
    return f"{component}.{param}"


class VariantResolver:
    """The variants of a runtime's instances, promotions included."""

    def __init__(self, runtime: Runtime[Any]) -> None:
        self.runtime = runtime
        self._pins: dict[str, str] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self._cache: LRU[tuple[str, str], dict[str, str]] = LRU(VARIANT_INSTANCES)

    def pins(self) -> dict[str, str]:
        """Experiment name -> promoted variant, re-read every ``PINS_REFRESH_S``."""
        if time.monotonic() - self._loaded_at > PINS_REFRESH_S:
            self.reload()
        return self._pins

    def reload(self) -> None:
        """Read the promotions now (and forget the instances' cached variants
        if they changed)."""
        with self._lock:
            try:
                rows = self.runtime.db.query(relations.ExperimentPin)
            except Exception as exc:  # the database is down: keep serving with what was known
                log.warning("could not read experiment_pins (keeping the known promotions): %s", exc)
                self._loaded_at = time.monotonic()
                return
            pins = {row.id: row.variant for row in rows}
            if pins != self._pins:
                first = self._loaded_at == float("-inf")
                self._pins = pins
                self._cache.clear()
                if not first:
                    # Serve results cached before the promotion were computed
                    # with the old variants.
                    self.runtime.cache.clear()
            self._loaded_at = time.monotonic()

    def variant_of(self, component: str, param: str, variants: Variants, instance: str) -> str:
        """The variant name ``instance`` gets for ``component``'s ``param``."""
        pinned = self.pins().get(experiment_name(component, param))
        if pinned is not None and pinned in variants.values:
            return pinned
        return variants.assign(component, param, instance)

    def variants(self, component: ComponentSpec, instance: str) -> dict[str, str]:
        """``instance``'s variant of each of ``component``'s Variants params."""
        if time.monotonic() - self._loaded_at > PINS_REFRESH_S:
            self.reload()
        key = (component.definition_id, instance)
        found = self._cache.get(key)
        if found is None:
            found = {
                param: self.variant_of(component.name, param, v, instance)
                for param, v in component.variant_params.items()
            }
            self._cache.put(key, found)
        return found
