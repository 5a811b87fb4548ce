"""What a caller may reach: a :class:`Scope` (components, instances and
relations as shell-style patterns, and whether it may write) and the
:class:`Principal` of one request that carries it."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from .errors import APIError


def _patterns(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"scope field {name!r} must be a list of non-empty patterns, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Scope:
    """What a key or token may reach. Patterns are shell-style
    (``user-*``); ``write`` allows running flows that queue updates or
    create instances, inserting records and giving feedback."""

    components: tuple[str, ...] = ("*",)
    instances: tuple[str, ...] = ("*",)
    relations: tuple[str, ...] = ("*",)
    write: bool = False

    def allows(self, component: str, instance: str | None = None, *, write: bool = False) -> bool:
        """Whether this scope reaches ``component`` (and ``instance``)."""
        if write and not self.write:
            return False
        if not any(fnmatch.fnmatchcase(component, p) for p in self.components):
            return False
        return instance is None or any(fnmatch.fnmatchcase(instance, p) for p in self.instances)

    def allows_relation(self, relation: str, *, write: bool = False) -> bool:
        """Whether this scope reaches the relation (table) ``relation``."""
        if write and not self.write:
            return False
        return any(fnmatch.fnmatchcase(relation, p) for p in self.relations)

    def as_dict(self) -> dict[str, Any]:
        return {
            "components": list(self.components),
            "instances": list(self.instances),
            "relations": list(self.relations),
            "write": self.write,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Scope:
        """A scope from its JSON form; ValueError naming a bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"a scope is a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"components", "instances", "relations", "write"}
        if unknown:
            raise ValueError(f"unknown scope field(s) {sorted(unknown)}")
        write = data.get("write", False)
        if not isinstance(write, bool):
            raise ValueError(f"scope field 'write' must be true or false, got {write!r}")
        return cls(
            components=_patterns(data.get("components", ["*"]), "components"),
            instances=_patterns(data.get("instances", ["*"]), "instances"),
            relations=_patterns(data.get("relations", ["*"]), "relations"),
            write=write,
        )


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request; ``scope`` None means
    unrestricted (no auth configured)."""

    kind: str
    """``open``, ``key`` or ``jwt``."""
    name: str
    scope: Scope | None = field(default=None)

    def can(self, component: str, instance: str | None = None, *, write: bool = False) -> bool:
        return self.scope is None or self.scope.allows(component, instance, write=write)

    def require(self, component: str, instance: str | None = None, *, write: bool = False) -> None:
        """Raise 403 unless this caller reaches ``component`` / ``instance``."""
        if not self.can(component, instance, write=write):
            what = f"{component}/{instance}" if instance is not None else component
            raise APIError(403, "forbidden", f"{self.kind} {self.name!r} may not {_verb(write)} {what}")

    def can_relation(self, relation: str, *, write: bool = False) -> bool:
        return self.scope is None or self.scope.allows_relation(relation, write=write)

    def require_relation(self, relation: str, *, write: bool = False) -> None:
        if not self.can_relation(relation, write=write):
            raise APIError(403, "forbidden", f"{self.kind} {self.name!r} may not {_verb(write)} relation {relation!r}")


OPEN = Principal("open", "anonymous")


def _verb(write: bool) -> str:
    return "write to" if write else "read"
