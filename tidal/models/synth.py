"""Made-up values that are a pure function of a seed: the stand-in model's
words, numbers and JSON-schema instances.

:class:`Draws` is a stream of numbers from SHA-256 in counter mode over a
canonical JSON encoding of the seed parts, so the same parts give the same
stream on every machine and Python version (``hash()`` is salted per process
and ``random`` is not promised stable across versions).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# fmt: off
WORDS = (
    "amber", "basin", "cedar", "delta", "ember", "fjord", "glade", "harbor", "island", "juniper", "kestrel",
    "lagoon", "meadow", "nectar", "orchard", "pebble", "quartz", "river", "summit", "thicket", "upland",
    "valley", "willow", "yarrow", "zephyr", "anchor", "beacon", "canyon", "dune", "estuary", "falcon",
    "granite", "heron", "inlet", "jetty", "kelp", "lantern", "marble", "needle", "otter", "prairie", "quiver",
    "reef", "spruce", "tundra", "umber", "vista", "wharf", "yonder", "bramble", "cobalt", "drift", "eddy",
    "flint", "grove", "hollow", "ivory", "jade", "knoll", "lichen", "moss", "nimbus", "oasis", "pine",
    "quill", "ridge", "sable", "tide", "urchin", "vale", "wren", "atlas", "birch", "coral", "dawn", "echo",
    "fern", "gale", "haze", "iris", "lark",
)
# fmt: on
"""The stand-in's vocabulary: one word is one token."""

MAX_DEPTH = 6
"""Below this depth of a JSON schema, objects get only their required
properties, arrays their minimum items and nullable values null, so
recursive schemas end."""


def canonical(value: Any) -> bytes:
    """``value`` as canonical JSON bytes (sorted keys, no spaces): the input of every hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def digest(*parts: Any) -> str:
    """Hex SHA-256 of the canonical JSON of ``parts``."""
    return hashlib.sha256(canonical(list(parts))).hexdigest()


class Draws:
    """A deterministic stream of numbers seeded by ``parts``."""

    def __init__(self, *parts: Any) -> None:
        self._seed = hashlib.sha256(canonical(list(parts))).digest()
        self._counter = 0

    def unit(self) -> float:
        """A number in [0, 1)."""
        block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
        self._counter += 1
        return int.from_bytes(block[:8], "big") / 2**64

    def below(self, n: int) -> int:
        """An integer in [0, n)."""
        return min(int(self.unit() * n), n - 1)

    def between(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        return low + self.below(high - low + 1)

    def choice(self, items: Sequence[T]) -> T:
        return items[self.below(len(items))]

    def words(self, count: int) -> list[str]:
        return [self.choice(WORDS) for _ in range(count)]


def instance(schema: Any, draws: Draws, root: Any = None, depth: int = 0) -> Any:
    """A value that validates against the JSON schema ``schema``.

    Covers what structured output and tool parameters use: ``type`` (or a
    list of types), ``enum``, ``const``, ``$ref`` into ``$defs`` /
    ``definitions``, ``anyOf`` / ``oneOf`` (the first non-null branch),
    ``allOf`` (merged), objects (every property, required ones first), arrays
    (``minItems`` / ``maxItems``), strings (``minLength`` / ``maxLength``,
    formats date, date-time, time, email, uri, uuid), integers and numbers
    (``minimum`` / ``maximum`` and their exclusive forms). ``pattern`` is not
    followed.
    """
    root = schema if root is None else root
    if depth > 4 * MAX_DEPTH:
        raise ValueError("the schema nests too deep: a recursive schema needs an optional or nullable way out")
    if not isinstance(schema, dict):
        return None if schema is False else draws.choice(WORDS)
    if "$ref" in schema:
        return instance(_resolve(schema["$ref"], root), draws, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return draws.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            branches = [b for b in schema[key] if not (isinstance(b, dict) and b.get("type") == "null")]
            if depth >= MAX_DEPTH and len(branches) < len(schema[key]):
                return None  # deep down, take the way out of a recursive schema
            return instance((branches or schema[key])[0], draws, root, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                merged = _merge(merged, part)
        return instance(merged, draws, root, depth + 1)
    kind = _type_of(schema)
    if depth >= MAX_DEPTH and isinstance(schema.get("type"), list) and "null" in schema["type"]:
        return None
    if kind == "object":
        return _object(schema, draws, root, depth)
    if kind == "array":
        return _array(schema, draws, root, depth)
    if kind == "integer":
        return _integer(schema, draws)
    if kind == "number":
        bounded = "maximum" in schema or "exclusiveMaximum" in schema
        return float(_integer(schema, draws)) + (0.0 if bounded else round(draws.unit() / 2, 2))
    if kind == "boolean":
        return draws.below(2) == 1
    if kind == "null":
        return None
    return _string(schema, draws)


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref ('#/...') is supported, got {ref!r}")
    node = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **b}
    if "properties" in a or "properties" in b:
        out["properties"] = {**a.get("properties", {}), **b.get("properties", {})}
    if "required" in a or "required" in b:
        out["required"] = [*a.get("required", []), *b.get("required", [])]
    return out


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if kinds else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _object(schema: dict[str, Any], draws: Draws, root: Any, depth: int) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties") or {}
    required = [name for name in schema.get("required", []) if name in properties]
    names = required if depth >= MAX_DEPTH else [*required, *(n for n in properties if n not in required)]
    out = {name: instance(properties[name], draws, root, depth + 1) for name in names}
    for name in schema.get("required", []):
        if name not in out:  # required but undescribed
            out[name] = draws.choice(WORDS)
    return out


def _array(schema: dict[str, Any], draws: Draws, root: Any, depth: int) -> list[Any]:
    low = int(schema.get("minItems", 0))
    high = int(schema.get("maxItems", max(low, 3)))
    count = low if depth >= MAX_DEPTH else draws.between(min(max(low, 1), high), max(min(high, low + 3), low))
    items = schema.get("items", {})
    if isinstance(schema.get("prefixItems"), list):
        prefix = [instance(s, draws, root, depth + 1) for s in schema["prefixItems"]]
        return prefix + [instance(items, draws, root, depth + 1) for _ in range(max(0, count - len(prefix)))]
    return [instance(items, draws, root, depth + 1) for _ in range(count)]


def _integer(schema: dict[str, Any], draws: Draws) -> int:
    low = schema.get("minimum", 0 if "maximum" not in schema else schema["maximum"] - 100)
    high = schema.get("maximum", low + 100)
    if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
        low = max(low, schema["exclusiveMinimum"] + 1)
    if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
        high = min(high, schema["exclusiveMaximum"] - 1)
    low, high = int(-(-low // 1)), int(high // 1)  # ceil the bottom, floor the top
    return draws.between(low, max(low, high))


FORMATS = {
    "date": lambda d: f"2024-{d.between(1, 12):02d}-{d.between(1, 28):02d}",
    "date-time": lambda d: f"2024-{d.between(1, 12):02d}-{d.between(1, 28):02d}T{d.between(0, 23):02d}:00:00Z",
    "time": lambda d: f"{d.between(0, 23):02d}:{d.between(0, 59):02d}:00",
    "email": lambda d: f"{d.choice(WORDS)}@example.com",
    "uri": lambda d: f"https://example.com/{d.choice(WORDS)}",
    "uuid": lambda d: "-".join(digest(d.unit())[a:b] for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))),
}


def _string(schema: dict[str, Any], draws: Draws) -> str:
    make = FORMATS.get(str(schema.get("format")))
    if make is not None:
        text: str = make(draws)
        return text
    text = " ".join(draws.words(draws.between(1, 3)))
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", max(low, len(text))))
    while len(text) < low:
        text += " " + draws.choice(WORDS)
    return text[: max(high, 0)] if len(text) > high else text
