"""The Redis store (``redis://``, ``rediss://``; Redis Cluster with
``?cluster=1``), one module per concern:

* ``store``: :class:`RedisStore` and :class:`RedisClusterStore`, the verbs
* ``connect``: store URLs and the client they open
* ``keys``: the key layout, and key names
* ``lua``: the scripts (``scripts/*.lua``), loaded and registered
* ``calls``: the plumbing every part calls through
* ``paths``, ``one_server``, ``two_step``, ``cluster``: how enqueue, claim
  and a worker's commit travel on one server, in single-slot mode, and on
  a cluster (chosen once per store)
* ``direct``: the hot path's per-thread connection, and why nothing is retried
* ``versions``: get_version's cache, kept fresh by client-side tracking
* ``operators``: the verbs off the hot path
"""

from .store import RedisClusterStore, RedisStore

__all__ = ["RedisClusterStore", "RedisStore"]
