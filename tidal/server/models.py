"""Request and response bodies of the API, including one request model per
flow whose ``props`` is the flow's declared schema (or any JSON object)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from typing_extensions import is_typeddict

if TYPE_CHECKING:
    from ..component import Component
    from ..relations import Record


class RunOptions(BaseModel):
    """How to run a flow (the instance API's keyword arguments)."""

    flush_update: bool = Field(False, description="Wait until this run's updates are applied before answering.")
    ignore_cache: bool = Field(False, description="Recompute even if a cached result exists.")
    force_refresh: bool = Field(False, description="Wait for queued updates first, so the serve op sees them.")


class RunRequest(RunOptions):
    """Run a flow whose props are not declared: any JSON object."""

    model_config = ConfigDict(extra="forbid")

    props: dict[str, Any] = Field(default_factory=dict, description="The flow's props.")


class RunResult(BaseModel):
    """The result of one run."""

    component: str
    instance: str
    flow: str
    result: Any = Field(description="The serve op's result (a list of items for a generator op); JSON where possible.")
    run_id: str | None = Field(
        description="Id of the run in the runs log (give feedback on it); null with the log off."
    )
    version: int = Field(description="The instance's state version when the answer was made.")


class FeedbackRequest(BaseModel):
    """Feedback on a run."""

    model_config = ConfigDict(extra="forbid")

    score: float | None = Field(None, allow_inf_nan=False)
    label: str | None = Field(None, max_length=1000)
    comment: str | None = Field(None, max_length=10000)


class QueryRequest(BaseModel):
    """Shared fields of a relation query (``where`` is typed per relation)."""

    model_config = ConfigDict(extra="forbid")

    order_by: str | list[str] = Field("created_at", description="Field names; prefix '-' for descending.")
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000)


def _model_name(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_") or "x" for p in parts)


def _required(schema: Any) -> bool:
    if is_typeddict(schema):
        return bool(getattr(schema, "__required_keys__", ()))
    return any(f.is_required() for f in schema.model_fields.values())


def flow_request_model(component: Component, flow: str, taken: set[str]) -> type[BaseModel]:
    """The request body of ``component``'s ``flow``: RunRequest with props
    typed by the flow's declared schema, if any."""
    schema = component.props_schemas.get(flow)
    if schema is None:
        return RunRequest
    name = _model_name("Run", component.name, flow)
    while name in taken:
        name += "_"
    taken.add(name)
    props: Any = (schema, ...) if _required(schema) else (schema, Field(default_factory=dict))
    model: type[BaseModel] = create_model(
        name,
        __base__=RunOptions,
        __config__=None,
        __doc__=f"Run flow {flow!r} of {component.name}.",
        props=props,
    )
    model.model_config["extra"] = "forbid"
    model.model_rebuild(force=True)
    return model


def where_model(cls: type[Record]) -> type[BaseModel]:
    """A query body for ``cls``: every scalar field as an optional filter."""
    fields: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        annotation: Any = info.annotation
        if annotation in (str, int, float, bool) or _optional_scalar(annotation):
            fields[name] = (annotation | None, None)
        elif name in ("created_at", "updated_at"):
            fields[name] = (annotation, None)
    where = create_model(_model_name(cls.__name__, "Where"), __config__=ConfigDict(extra="forbid"), **fields)
    return create_model(
        _model_name(cls.__name__, "Query"),
        __base__=QueryRequest,
        where=(where, Field(default_factory=where)),
    )


def _optional_scalar(annotation: Any) -> bool:
    import types
    import typing

    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return False
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return len(args) == 1 and args[0] in (str, int, float, bool)
