"""Tidal: AI application state that keeps itself fresh.

``from tidal import Component, DiscardPolicy`` runs a Motion app unchanged.
The public surface is listed, grouped, in ``__all__``; relations, the HTTP
server and client, and the data-frame types load on first use, so that
``import tidal`` stays quick.
"""

from __future__ import annotations

from . import lazy
from .app import App, default_app, set_default_app
from .compat import (
    RedisParams,
    StateMigrator,
    UpdateEventGroup,
    clear_instance,
    copy_db,
    copy_state,
    get_components,
    get_instances,
    inspect_state,
)
from .component import Component
from .config import Settings
from .core.policies import DiscardPolicy
from .core.props import Properties
from .core.variants import Variants
from .engine.migrate import MigrationResult
from .exceptions import (
    ConfigError,
    DefinitionError,
    FailedOp,
    GuardrailError,
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
    # Relations pull in pydantic, numpy and SQLAlchemy.
    "Record": "tidal.relations.record",
    "Vector": "tidal.relations.record",
    "Rows": "tidal.relations.rows",
    "Database": "tidal.relations.database",
    "Run": "tidal.relations.builtin",
    "Feedback": "tidal.relations.builtin",
    "ModelCall": "tidal.relations.builtin",
    "GuardViolation": "tidal.relations.builtin",
    "ExperimentPin": "tidal.relations.builtin",
    # The HTTP side pulls in FastAPI and httpx.
    "Client": "tidal.client",
    "AsyncClient": "tidal.client",
    "create_app": "tidal.server",
    # Motion's state types pull in pandas and pyarrow.
    "MDataFrame": "tidal.tables",
    "MTable": "tidal.tables",
}


__getattr__ = lazy.attributes(__name__, _LAZY, globals(), keep=False)

__version__ = "0.1.0"

__all__ = [
    # Applications, components and instances
    "App",
    "Component",
    "ComponentInstance",
    "DiscardPolicy",
    "Instance",
    "Properties",
    "Settings",
    "Variants",
    "default_app",
    "set_default_app",
    # Relations and the runs log
    "Database",
    "ExperimentPin",
    "Feedback",
    "GuardViolation",
    "ModelCall",
    "Record",
    "Rows",
    "Run",
    "Vector",
    # Motion's helpers and state types
    "MDataFrame",
    "MTable",
    "MigrationResult",
    "RedisParams",
    "StateMigrator",
    "UpdateEventGroup",
    "clear_instance",
    "copy_db",
    "copy_state",
    "get_components",
    "get_instances",
    "inspect_state",
    # Over HTTP
    "AsyncClient",
    "Client",
    "create_app",
    # Errors (tidal.exceptions draws their tree)
    "ConfigError",
    "DefinitionError",
    "FailedOp",
    "GuardrailError",
    "InitStateError",
    "LeaseLostError",
    "MissingPropError",
    "NotFoundError",
    "PropsValidationError",
    "ReadOnlyError",
    "RecordNotFoundError",
    "RecordValidationError",
    "SchemaError",
    "StateError",
    "StateIntegrityError",
    "StateSerializationError",
    "StoreError",
    "TidalError",
    "UnknownFlowError",
    "UpdateError",
    "UpdateFailedError",
    "UpdateReturnError",
    "VersionConflictError",
]
