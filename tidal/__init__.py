"""Tidal: AI application state that keeps itself fresh.

``from tidal import Component, DiscardPolicy`` runs a Motion app unchanged.
"""

from __future__ import annotations

from .app import App, default_app, set_default_app
from .config import Settings
from .core.component import Component
from .core.policies import DiscardPolicy
from .core.props import Properties
from .exceptions import (
    ConfigError,
    DefinitionError,
    FailedOp,
    InitStateError,
    LeaseLostError,
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
from .migrate import MigrationResult, StateMigrator

ComponentInstance = Instance
"""Motion's name for an instance."""

__version__ = "0.1.0"

__all__ = [
    "App",
    "Component",
    "ComponentInstance",
    "ConfigError",
    "DefinitionError",
    "DiscardPolicy",
    "FailedOp",
    "InitStateError",
    "Instance",
    "LeaseLostError",
    "MigrationResult",
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
    "default_app",
    "set_default_app",
]
