"""Props: the per-run arguments of a flow."""

from __future__ import annotations

from typing import Any

from typing_extensions import is_typeddict

from ..exceptions import MissingPropError, PropsValidationError


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
            raise MissingPropError(f"key {key!r} not found in props (have: {sorted(self)})", key) from None

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


def is_props_schema(schema: Any) -> bool:
    """Whether ``schema`` can declare a flow's props: a pydantic model class
    or a TypedDict."""
    from pydantic import BaseModel

    return (isinstance(schema, type) and issubclass(schema, BaseModel)) or is_typeddict(schema)


def validate_props(schema: Any, props: Any, where: str) -> dict[str, Any]:
    """``props`` checked against ``schema`` (a pydantic model or a
    TypedDict), as a plain dict with defaults filled in; raises
    PropsValidationError naming each bad field."""
    from pydantic import BaseModel, ValidationError

    try:
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return schema.model_validate(props).model_dump()
        return dict(_adapter(schema).validate_python(props))
    except ValidationError as exc:
        errors = [(".".join(str(p) for p in e["loc"]) or "(props)", e["msg"]) for e in exc.errors()]
        first = errors[0]
        raise PropsValidationError(
            f"props of {where} failed {getattr(schema, '__name__', schema)}: {first[0]}: {first[1]}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            errors,
        ) from None


_adapters: dict[Any, Any] = {}


def _adapter(schema: Any) -> Any:
    from pydantic import TypeAdapter

    adapter = _adapters.get(schema)
    if adapter is None:
        adapter = _adapters[schema] = TypeAdapter(schema)
    return adapter
