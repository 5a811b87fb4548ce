"""Where a Redis Cluster keeps an instance's keys, for the cluster tests:
the node that owns an instance's slot, and instance names spread over
every node."""

from __future__ import annotations

from tidal.stores.redis import RedisStore


def node_of(store: RedisStore, instance: str, component: str = "Comp") -> str:
    """``host:port`` of the node that owns the slot of ``component/instance``."""
    key = store.keys.tag(component, instance) + ":meta"
    return str(store.client.get_node_from_key(key).name)  # type: ignore[attr-defined]


def spread(store: RedisStore, per_node: int = 2, component: str = "Comp") -> list[str]:
    """Instance names of ``component`` whose keys land ``per_node`` on each
    master of the cluster (grouped by node)."""
    masters = len(store.client.get_primaries())  # type: ignore[attr-defined]
    names: dict[str, list[str]] = {}
    k = 0
    while len(names) < masters or any(len(v) < per_node for v in names.values()):
        name = f"i{k}"
        group = names.setdefault(node_of(store, name, component), [])
        if len(group) < per_node:
            group.append(name)
        k += 1
    return [name for group in names.values() for name in group]
