"""The Lua scripts of the Redis store (``scripts/*.lua``, on the key layout
of :mod:`~tidal.stores.redis.keys`), read once at import and registered with
each store's client.

Redis runs a script as one self-contained chunk: it has no ``require``. So
what several scripts share (``scripts/lib/*.lua``: the server clock, the
claim index upkeep, the dedupe check) is pasted in front of each script
that names it in a directive line, and a script that runs another script
whole (the one-server scripts run the single-slot ones in one call) gets it
wrapped as a local function of ``(KEYS, ARGV)``:

    --! uses now, dedupe
    --! function commit: instance_commit

Times are milliseconds of the server's clock; they stay below 14 digits,
which Lua prints exactly.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from redis.commands.core import Script

_SCRIPTS = files(__package__).joinpath("scripts")


def _read(path: str) -> str:
    return _SCRIPTS.joinpath(path).read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The text of ``scripts/<name>.lua`` as sent to the server: with the
    shared functions and the scripts its directives name in front."""
    text = _read(name + ".lua")
    head = []
    for line in text.splitlines():
        if line.startswith("--! uses "):
            head += [_read(f"lib/{lib.strip()}.lua") for lib in line[len("--! uses ") :].split(",")]
        elif line.startswith("--! function "):
            function, script = (part.strip() for part in line[len("--! function ") :].split(":"))
            head.append(f"local function {function}(KEYS, ARGV)\n{source(script)}\nend\n")
    return "".join(head) + text


class Scripts:
    """Every script, registered with one client (redis-py's
    :class:`~redis.commands.core.Script`, or the cluster store's own kind)."""

    def __init__(self, client: Any) -> None:
        register = client.register_script
        # The single-slot scripts: one instance's keys, or the global ones.
        self.global_enqueue: Script = register(source("global_enqueue"))
        self.global_candidates: Script = register(source("global_candidates"))
        self.global_settle: Script = register(source("global_settle"))
        self.instance_push: Script = register(source("instance_push"))
        self.instance_claim: Script = register(source("instance_claim"))
        self.instance_commit: Script = register(source("instance_commit"))
        self.instance_renew: Script = register(source("instance_renew"))
        self.instance_release: Script = register(source("instance_release"))
        self.instance_create: Script = register(source("instance_create"))
        self.instance_read: Script = register(source("instance_read"))
        self.instance_delete: Script = register(source("instance_delete"))
        self.instance_last_op: Script = register(source("instance_last_op"))
        # For operators.
        self.instance_failures: Script = register(source("instance_failures"))
        self.instance_describe: Script = register(source("instance_describe"))
        self.instance_history: Script = register(source("instance_history"))
        self.instance_retry: Script = register(source("instance_retry"))
        self.instance_drop_failed: Script = register(source("instance_drop_failed"))
        # One key of its own slot.
        self.rate_take: Script = register(source("rate_take"))
        # One server only: two slots in one script (see one_server.py).
        self.one_server_enqueue: Script = register(source("one_server_enqueue"))
        self.one_server_commit: Script = register(source("one_server_commit"))
        self.one_server_claim: Script = register(source("one_server_claim"))
