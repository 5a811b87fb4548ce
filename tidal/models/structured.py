"""Answers as pydantic objects: the model is asked for JSON of the schema
(``response_format`` json_schema, which servers with guided decoding
enforce), the reply is validated, and a reply that fails is shown its
errors and asked again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from . import params
from .errors import ModelInputError, StructuredOutputError

if TYPE_CHECKING:
    from .client import Model


def response_format(schema: type[BaseModel]) -> dict[str, Any]:
    """The ``response_format`` asking for JSON that fits ``schema``."""
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__[:64], "schema": schema.model_json_schema(), "strict": False},
    }


def ask(
    model: Model, messages: list[dict[str, Any]], settings: dict[str, Any], schema: type[BaseModel], retries: int
) -> Any:
    """See :meth:`Model.structured`."""
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise ModelInputError(f"schema must be a pydantic model class, got {schema!r}", setting="schema")
    params._integer("retries", retries, 0, 20)
    fmt = response_format(schema)
    msgs = list(messages)
    raw, errors = "", ""
    for _ in range(retries + 1):
        result = model.chat_once(msgs, settings, response_format=fmt)
        raw = result.text
        try:
            return schema.model_validate_json(raw)
        except ValidationError as exc:
            errors = str(exc)
        msgs += [
            {"role": "assistant", "content": raw},
            {
                "role": "user",
                "content": f"That reply does not fit the required JSON schema:\n{errors}\n"
                "Reply again with only the JSON object, fixed.",
            },
        ]
    raise StructuredOutputError(
        f"{model.name} gave no reply that fits {schema.__name__} in {retries + 1} attempts; last errors: {errors}",
        raw=raw,
        errors=errors,
        attempts=retries + 1,
    )
