"""The Redis store's verbs off the hot path: listing and deleting instances,
and those for operators and the freshness view (pending counts, failed ops
to list, retry or drop, queue statistics, per-key descriptions and
history). Several are O(instances of a component)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from ...exceptions import FailedOp, StoreError
from ..base import KeyInfo, KeyVersion, QueueStats
from .calls import Calls
from .connect import safe_url
from .keys import escape, from_ms
from .two_step import PUSH_ATTEMPTS


class OperatorVerbs:
    """list_instances, delete_instance, describe_state, key_history, pending,
    last_op_id, failures, list_failures, retry_failed, drop_failed and
    queue_stats on Redis, for :class:`~tidal.stores.redis.store.RedisStore`
    to hand them to."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.keys = calls.keys
        self.scripts = calls.scripts

    def describe_state(self, component: str, instance: str) -> list[KeyInfo] | None:
        t = self.keys.tag(component, instance)
        with self.calls.io():
            flat = self.scripts.instance_describe(keys=[t + ":meta", t + ":vals", t + ":vers", t + ":at"])
        if flat is None:
            return None
        infos = [
            KeyInfo(flat[k].decode(), int(float(flat[k + 1])), int(flat[k + 2]), from_ms(flat[k + 3]))
            for k in range(0, len(flat), 4)
        ]
        return sorted(infos, key=lambda info: info.key)

    def key_history(self, component: str, instance: str, key: str, limit: int | None = None) -> list[KeyVersion]:
        t = self.keys.tag(component, instance)
        with self.calls.io():
            entries = self.scripts.instance_history(
                keys=[t + ":vals", t + ":vers", t + ":at"], args=[t, key, -1 if limit is None else limit]
            )
        out = []
        for entry in entries:
            version, ms, rest = bytes(entry).split(b":", 2)
            out.append(KeyVersion(int(version), rest[1:] if rest[:1] == b"=" else None, from_ms(ms)))
        return out

    def pending(self, component: str, instance: str, *, flow: str | None = None, upto: int | None = None) -> int:
        t = self.keys.tag(component, instance)
        key = t + ":q" if flow is None else f"{t}:q:{flow}"
        with self.calls.io():
            return int(self.calls.client.zcount(key, "-inf", "+inf" if upto is None else upto))

    def last_op_id(self, component: str, instance: str, *, flow: str | None = None) -> int:
        t = self.keys.tag(component, instance)
        keys = [t + ":q", t + ":f"] if flow is None else [f"{t}:q:{flow}", f"{t}:f:{flow}"]
        with self.calls.io():
            return int(self.scripts.instance_last_op(keys=keys))

    def failures(
        self,
        component: str,
        instance: str,
        *,
        flow: str | None = None,
        after: int = 0,
        upto: int | None = None,
    ) -> list[FailedOp]:
        t = self.keys.tag(component, instance)
        key = t + ":f" if flow is None else f"{t}:f:{flow}"
        with self.calls.io():
            flat = self.scripts.instance_failures(keys=[key], args=[t, after, "+inf" if upto is None else upto])
        return [
            FailedOp(
                int(flat[k]), component, instance, flat[k + 1].decode(), flat[k + 2].decode(), int(flat[k + 3]) / 1000
            )
            for k in range(0, len(flat), 4)
        ]

    def list_failures(
        self, component: str, *, instance: str | None = None, flow: str | None = None, limit: int | None = None
    ) -> list[FailedOp]:
        # O(instances of the component): for operators, not a hot path.
        names = [instance] if instance is not None else self.list_instances(component)
        found: list[FailedOp] = []
        for name in names:
            found += self.failures(component, name, flow=flow)
        found.sort(key=lambda f: f.op_id, reverse=True)
        return found[:limit]

    def retry_failed(self, component: str, instance: str, op_id: int) -> int | None:
        t = self.keys.tag(component, instance)
        owner = self.keys.owner(component, instance)
        with self.calls.io():
            if self.calls.client.zscore(t + ":f", op_id) is None:
                return None
            for _ in range(PUSH_ATTEMPTS):
                (new_id,) = self.scripts.global_enqueue(
                    keys=[self.keys.ids], args=[self.keys.global_tag, 1, escape(component), instance, "", 0, owner]
                )
                got = self.scripts.instance_retry(
                    keys=[t + ":m", t + ":q", t + ":flows", t + ":f"], args=[t, op_id, int(new_id)]
                )
                code = int(got[0])
                if code == -1:
                    continue
                if code == 1:
                    return int(new_id)
                # Not retried: point G:ready back at what the queue holds.
                self.calls.settle_ready(component, instance, head=int(got[1]), watermark=int(got[2]), unlease=False)
                if code == -3:
                    raise StoreError(
                        f"failed op {op_id} of {component}/{instance} has no payload in the store "
                        "(it failed before failed ops kept theirs); it can only be dropped"
                    )
                return None
        raise StoreError(f"could not retry op {op_id} in {safe_url(self.calls.url)}: the queue kept moving")

    def drop_failed(self, component: str, instance: str, op_id: int) -> bool:
        t = self.keys.tag(component, instance)
        with self.calls.io():
            return bool(self.scripts.instance_drop_failed(keys=[t + ":f"], args=[t, op_id]))

    def queue_stats(self, components: Sequence[str]) -> dict[str, QueueStats]:
        # O(instances of the component): statistics for operators, not a hot path.
        client = self.calls.client
        out: dict[str, QueueStats] = {}
        for component in components:
            names = self.list_instances(component)
            with self.calls.io():
                pipe = client.pipeline(transaction=False)
                for name in names:
                    t = self.keys.tag(component, name)
                    pipe.zcard(t + ":q")
                    pipe.zcard(t + ":f")
                    pipe.zrange(t + ":q", 0, 0)
                counts = pipe.execute()
                heads = []
                for k, name in enumerate(names):
                    first = counts[3 * k + 2]
                    if first:
                        heads.append(f"{self.keys.tag(component, name)}:op:{int(first[0])}")
                pipe = client.pipeline(transaction=False)
                for key in heads:
                    pipe.hget(key, "t")
                times = [int(t) / 1000 for t in pipe.execute() if t is not None]
            pending = [counts[3 * k] for k in range(len(names))]
            out[component] = QueueStats(
                pending=int(sum(pending)),
                failed=int(sum(counts[3 * k + 1] for k in range(len(names)))),
                instances=sum(1 for p in pending if p),
                oldest_enqueued_at=min(times, default=None),
            )
        return out

    def list_instances(self, component: str) -> list[str]:
        client = self.calls.client
        with self.calls.io():
            listed = cast(set[bytes], client.smembers(self.keys.of_component("instances", component)))
            names = sorted(m.decode() for m in listed)
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.exists(self.keys.tag(component, name) + ":meta")
            alive = pipe.execute()
        return [name for name, ok in zip(names, alive, strict=True) if ok]

    def delete_instance(self, component: str, instance: str) -> None:
        t = self.keys.tag(component, instance)
        keys = [t + s for s in (":meta", ":vals", ":vers", ":lease", ":q", ":f", ":flows", ":m", ":at")]
        client = self.calls.client
        with self.calls.io():
            alloc = cast(bytes | None, client.hget(self.keys.of_component("alloc", component), instance))
            fence = int(alloc.split(b":")[0]) if alloc else 0
            watermark = int(self.scripts.instance_delete(keys=keys, args=[t, fence]))
            self.calls.settle_ready(component, instance, head=0, watermark=watermark, unlease=True)
            client.srem(self.keys.of_component("instances", component), instance)
