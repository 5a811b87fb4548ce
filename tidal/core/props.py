"""Props: the per-run arguments of a flow."""

from __future__ import annotations

from typing import Any


class Properties(dict[str, Any]):
    """The props of one run: a dict the caller passes to ``run``, which the
    serve op may add to, and which the update ops then receive with
    ``serve_result`` set to what the serve op returned."""

    __slots__ = ("_serve_result",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._serve_result: Any = None

    def __getitem__(self, key: str) -> Any:
        try:
            return dict.__getitem__(self, key)
        except KeyError:
            raise KeyError(f"key {key!r} not found in props (have: {sorted(self)})") from None

    def __getattr__(self, name: str) -> Any:
        # props.record reads like props["record"]; only reached when normal
        # attribute lookup fails, so it costs nothing on other attributes.
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return dict.__getitem__(self, name)
        except KeyError:
            raise AttributeError(f"props have no {name!r} (have: {sorted(self)})") from None

    @property
    def serve_result(self) -> Any:
        """The serve op's result; None in the serve op itself or for flows
        without one."""
        return self._serve_result

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (dict(self), self._serve_result))


def _rebuild(items: dict[str, Any], serve_result: Any) -> Properties:
    props = Properties(items)
    props._serve_result = serve_result
    return props
