"""Packages whose names load their module on first use.

``tidal``, ``tidal.relations``, ``tidal.server``, ``tidal.models``,
``tidal.rag`` and ``tidal.evals`` each keep a table of name -> module and
hand it to :func:`attributes`, so that importing the package costs nothing
until a name is used (SQLAlchemy, FastAPI, the ``openai`` client and sqlglot
each cost tens to hundreds of milliseconds to import). At the bottom layer,
so that every package shares it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attributes(
    package: str, modules: Mapping[str, str], namespace: dict[str, Any], *, keep: bool = True
) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``modules`` maps a name to
    the module (absolute, or relative to the package) that defines it. With
    ``keep`` the value is stored in ``namespace`` (the package's globals),
    so later look-ups do not come back here."""

    def __getattr__(name: str) -> object:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        if keep:
            namespace[name] = value
        return value

    return __getattr__
