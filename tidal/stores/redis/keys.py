"""The Redis store's key layout, and the names of its keys.

Keys, under a namespace (``tidal`` unless the URL says ``?namespace=…``) so
that several apps can share a server. Names inside keys are escaped
(``%`` ``:`` ``{`` ``}`` as ``%25`` ``%3A`` ``%7B`` ``%7D``) so that no two
instances' keys can coincide. Times are milliseconds of the Redis server's
clock, read with ``TIME`` inside the scripts, so client clocks never matter.

Per instance, all in the hash slot of the tag ``T = {ns:component:instance}``::

    T:meta         HASH  v: version, c / u: created / updated ms.
                         Exists iff the instance does: get_version is one HGET,
                         and none while the server has not said the key
                         changed since (client-side tracking, see
                         :mod:`~tidal.stores.redis.versions`).
    T:vals         HASH  key -> value bytes (live keys only)
    T:vers         ZSET  key -> version it was last written or deleted at; a
                         key here but not in T:vals is a deletion (tombstone),
                         so read_state(since) is one ZRANGEBYSCORE
    T:at           HASH  key -> ms it was last written or deleted at
    T:h:<key>      LIST  the key's earlier versions, newest first, at most
                         ``history_versions``: "version:ms:=value", or
                         "version:ms:-" for a deletion
    T:lease        HASH  t: token, x: expiry ms
    T:q            ZSET  ids of pending ops (queued or running), score = id
    T:q:<flow>     ZSET  the same, of one flow: pending(flow=, upto=) and the
                         backlog a claim counts are one ZCOUNT each
    T:f, T:f:<flow> ZSET ids of failed ops, all and per flow
    T:flows        SET   flows ever queued (to find T:q:<flow> on delete)
    T:op:<id>      HASH  f: flow, p: payload, t: enqueued ms, n: attempts,
                         e: error, x: failed ms.  Deleted when the op is done
                         (a failed op keeps it, payload included, until it is
                         retried or dropped).
    T:m            STR   push watermark: the highest op id pushed (or fenced);
                         a push of lower ids is refused
    T:dd           ZSET  dedupe key -> expiry ms, of ops pushed here (the set
                         expires with its last key)

Global, in the hash slot of the tag ``G = {ns}``::

    G:ids                  STR   op id counter (INCR): ids only grow
    G:ready:<component>    ZSET  instance -> head op id, of every instance that
                                 may have pending ops: what claim looks at
    G:alloc:<component>    HASH  instance -> "id:ms", the last op id allocated
                                 to it and when
    G:leased:<component>   ZSET  instance -> lease expiry ms: a hint that lets
                                 claim skip held instances without asking them
    G:instances:<component> SET  instance ids (a superset: checked on listing)
    G:dedupe:<key>         STR   owner "component:instance", with the dedupe ttl

Cache entries are ``ns:cache:<key>`` strings with a Redis TTL and no hash
tag, so that they spread over a cluster's slots. The buckets of shared rate
limits are ``ns:rate:<bucket>`` strings, without hash tag too: the bucket's
GCRA time in microseconds of the server's clock (``rate_take.lua``), expiring
when the bucket is full again.

Each script (``scripts/*.lua``) touches the keys of one hash slot only,
except the one-server scripts (``one_server_*.lua``), which touch an
instance's slot and the global one; keys a script derives from a prefix (an
op's hash, a flow's queue) share the tag of the keys it is passed. The
escaping is repeated in ``one_server_claim.lua``, which builds the tags of
the instances it finds.
"""

from __future__ import annotations


def escape(name: str) -> str:
    """``name`` as it appears inside a key (see the module docs)."""
    return name.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def to_ms(seconds: float) -> int:
    """A duration in whole milliseconds, at least 1 (0 would mean none)."""
    return max(1, round(seconds * 1000))


def from_ms(ms: bytes | str) -> float | None:
    """Epoch seconds of a stored ms value; None when it was never recorded."""
    return int(ms) / 1000 if ms else None


class KeyNames:
    """The names of one namespace's keys."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.escaped_namespace = escape(namespace)
        self.global_tag = "{" + self.escaped_namespace + "}"
        """``G``: the tag of the global keys."""
        self.ids = self.global_tag + ":ids"
        self.cache_prefix = self.escaped_namespace.encode() + b":cache:"

    def rate(self, bucket: str) -> str:
        """``ns:rate:<bucket>``: a shared rate limit's bucket."""
        return f"{self.escaped_namespace}:rate:{escape(bucket)}"

    def tag(self, component: str, instance: str) -> str:
        """``T``: the tag of an instance's keys."""
        return "{" + f"{self.escaped_namespace}:{escape(component)}:{escape(instance)}" + "}"

    def of_component(self, kind: str, component: str) -> str:
        """``G:<kind>:<component>``: ``ready``, ``alloc``, ``leased`` or ``instances``."""
        return f"{self.global_tag}:{kind}:{escape(component)}"

    def owner(self, component: str, instance: str) -> str:
        """What a ``G:dedupe:<key>`` holds for the instance it belongs to."""
        return f"{escape(component)}:{escape(instance)}"
