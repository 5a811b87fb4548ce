"""Variants: a component param whose value differs by instance, for
experiments. Pure definitions: the assignment is a hash, no store involved.

::

    Assistant = app.component("Assistant", params={"style": tidal.Variants(a="terse", b="friendly")})

    @Assistant.serve("ask")
    def ask(state, props):
        style = Assistant.params["style"]      # "terse" or "friendly", per instance

Each instance gets one variant, for good: the variant is picked by a hash of
the component's name, the param's name and the instance id, so every process
picks the same one without asking anyone, and an instance never switches
(unless the experiment is promoted: then every instance gets the winner).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ..context import current_run
from ..exceptions import DefinitionError


class Variants:
    """The values a param takes in an experiment, by variant name, and how
    much of the traffic each gets (``weights``, by name; equal by default)::

        tidal.Variants(a="terse", b="friendly", weights={"a": 0.9, "b": 0.1})
    """

    __slots__ = ("_cumulative", "values", "weights")

    def __init__(self, weights: Mapping[str, float] | None = None, **values: Any) -> None:
        if not values:
            raise DefinitionError("Variants needs at least one variant, e.g. Variants(a='terse', b='friendly')")
        self.values: dict[str, Any] = dict(values)
        given = dict(weights) if weights is not None else {name: 1.0 for name in values}
        unknown = sorted(set(given) - set(values))
        if unknown:
            raise DefinitionError(
                f"Variants: weights name unknown variants {unknown}; the variants are {sorted(values)}"
            )
        for name, weight in given.items():
            if not isinstance(weight, int | float) or weight < 0 or weight != weight:
                raise DefinitionError(f"Variants: the weight of {name!r} must be a number >= 0, got {weight!r}")
        total = float(sum(given.get(name, 0.0) for name in values))
        if total <= 0:
            raise DefinitionError("Variants: the weights add up to 0; give at least one variant a positive weight")
        self.weights: dict[str, float] = {name: given.get(name, 0.0) / total for name in values}
        acc = 0.0
        cumulative = []
        for name in values:
            acc += self.weights[name]
            cumulative.append((acc, name))
        self._cumulative = cumulative

    @property
    def names(self) -> list[str]:
        """The variants' names, in the order given."""
        return list(self.values)

    def assign(self, component: str, param: str, instance: str) -> str:
        """The variant of ``instance``: a point in [0, 1) from a SHA-256 of
        (component, param, instance), placed among the weights."""
        digest = hashlib.sha256(f"{component}\x00{param}\x00{instance}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
        for edge, name in self._cumulative:
            if point < edge:
                return name
        return self._cumulative[-1][1]  # rounding left the last edge just under 1

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self.values.items())
        return f"Variants({inner}, weights={self.weights})"


def variant_params(params: Mapping[str, Any]) -> dict[str, Variants]:
    """The params of a component that are experiments."""
    return {name: value for name, value in params.items() if isinstance(value, Variants)}


class Params(dict[str, Any]):
    """A component's params when some are :class:`Variants`: inside an op,
    ``C.params["style"]`` is the value of the running instance's variant;
    outside ops it is the ``Variants`` itself. Components without variants
    keep a plain dict (Motion's ``C.params``)."""

    __slots__ = ("component",)

    def __init__(self, component: Any, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        self.component = component
        """The ComponentSpec whose params these are."""

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if type(value) is Variants:
            run = current_run.get()
            if run is not None:
                # Resolved once per instance and cached by the runtime.
                return value.values[run.runtime.variants(self.component, run.instance)[key]]
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 - self.get is this method
