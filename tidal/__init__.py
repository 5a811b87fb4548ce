"""Tidal: AI application state that keeps itself fresh.

``from tidal import Component, DiscardPolicy`` runs a Motion app unchanged.
"""

from __future__ import annotations

from .app import App, default_app, set_default_app
from .compat import StateMigrator, clear_instance, get_instances, inspect_state
from .component import Component
from .config import Settings
from .core.policies import DiscardPolicy
from .core.props import Properties
from .engine.migrate import MigrationResult
from .exceptions import (
    ConfigError,
    DefinitionError,
    FailedOp,
    InitStateError,
    LeaseLostError,
    MissingPropError,
    NotFoundError,
    PropsValidationError,
    ReadOnlyError,
    RecordNotFoundError,
    RecordValidationError,
    SchemaError,
    StateError,
    StateIntegrityError,
    StateSerializationError,
    StoreError,
    TidalError,
    UnknownFlowError,
    UpdateError,
    UpdateFailedError,
    UpdateReturnError,
    VersionConflictError,
)
from .instance import Instance

ComponentInstance = Instance
"""Motion's name for an instance."""

_LAZY = {
    "Record": "tidal.relations.record",
    "Vector": "tidal.relations.record",
    "Rows": "tidal.relations.rows",
    "Database": "tidal.relations.database",
    "Run": "tidal.relations.builtin",
    "Feedback": "tidal.relations.builtin",
    "Client": "tidal.client",
    "AsyncClient": "tidal.client",
    "create_app": "tidal.server",
    # pandas and pyarrow (the `data` extra) load only with these.
    "MDataFrame": "tidal.tables",
    "MTable": "tidal.tables",
}


def __getattr__(name: str) -> object:
    # Relations pull in pydantic, numpy and SQLAlchemy: import them only when
    # an app uses them, so that `import tidal` stays quick.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tidal' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncClient",
    "Client",
    "MissingPropError",
    "PropsValidationError",
    "create_app",
    "Component",
    "ComponentInstance",
    "ConfigError",
    "Database",
    "Record",
    "NotFoundError",
    "RecordNotFoundError",
    "RecordValidationError",
    "Run",
    "Rows",
    "SchemaError",
    "Vector",
    "DefinitionError",
    "DiscardPolicy",
    "FailedOp",
    "Feedback",
    "InitStateError",
    "Instance",
    "LeaseLostError",
    "MDataFrame",
    "MTable",
    "MigrationResult",
    "ReadOnlyError",
    "Properties",
    "Settings",
    "StateError",
    "StateIntegrityError",
    "StateMigrator",
    "StateSerializationError",
    "StoreError",
    "TidalError",
    "UnknownFlowError",
    "UpdateError",
    "UpdateFailedError",
    "UpdateReturnError",
    "VersionConflictError",
    "clear_instance",
    "default_app",
    "get_instances",
    "inspect_state",
    "set_default_app",
]
