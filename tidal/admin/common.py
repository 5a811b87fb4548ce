"""What the admin modules share: the ``as_dict()`` of their results, and
the checks that turn an unknown component or instance into
:class:`~tidal.exceptions.NotFoundError` naming the known ones."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..exceptions import NotFoundError

if TYPE_CHECKING:
    from ..app import App


class AsDict:
    """Mixin of the admin dataclasses."""

    def as_dict(self) -> dict[str, Any]:
        """This object as JSON-ready data."""
        return asdict(self)  # type: ignore[call-overload,no-any-return]


def check_component(app: App, name: str) -> list[str]:
    """The component's instance ids; NotFoundError if the app neither
    defines the component nor has instances of it."""
    ids = app.store.list_instances(name)
    if not ids and name not in app.components:
        raise NotFoundError("component", name, sorted(app.components), where=f"app {app.name!r}")
    return ids


def check_instance(app: App, comp: str, instance: str) -> int:
    """The instance's current state version; NotFoundError if it does not exist."""
    version = app.store.get_version(comp, instance)
    if version is None:
        raise NotFoundError("instance", f"{comp}/{instance}", app.store.list_instances(comp), where=app.store.url)
    return version
