"""Tools a model may call: flows of components, Python functions, searches.

A flow offered as a tool (``Orders.flow("status")``) takes its props as the
tool's arguments (the flow's declared props schema is the JSON schema the
model sees) and runs as a child run of the op that asked the model: a row
of ``runs`` of its own, named in the ``model_calls`` row of the tool call.
It runs under the scope of the HTTP caller whose request led to it
(``tidal.context.caller_scope``), exactly as if that caller had run the
flow over HTTP: a tool call outside the caller's scope is refused, and the
model is told so.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, validate_call

from ..component import FlowRef
from ..context import caller_scope
from . import accounting
from .errors import ModelInputError, ToolLoopError
from .results import ChatResult, Usage

if TYPE_CHECKING:
    from .client import Model

_NAME = re.compile(r"[^a-zA-Z0-9_-]")

MAX_RESULT_CHARS = 20_000
"""A tool's result is cut to this many characters before the model sees it."""


class ToolDenied(Exception):
    """The caller's scope does not reach what the tool would run."""


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does, the JSON
    schema of its arguments, and how to run it (``run(arguments) ->
    (result, child_run_id)``)."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], tuple[Any, str | None]] = field(repr=False)

    def spec(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def tool_name(text: str) -> str:
    """``text`` as a tool name the APIs accept (``^[a-zA-Z0-9_-]{1,64}$``)."""
    return _NAME.sub("_", text)[:64] or "tool"


def function_tool(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> Tool:
    """A Python function as a tool; its parameters' type hints make the
    schema, and pydantic checks the model's arguments against them."""
    schema = TypeAdapter(fn).json_schema()  # type: ignore[arg-type]  # a function is a TypeForm to pydantic
    schema.pop("title", None)
    checked = validate_call(fn)

    def run(arguments: dict[str, Any]) -> tuple[Any, str | None]:
        return checked(**arguments), None

    return Tool(tool_name(name or fn.__name__), description or inspect.getdoc(fn) or fn.__name__, schema, run)


def flow_tool(ref: FlowRef) -> Tool:
    """A component's flow as a tool (see the module's docstring)."""
    component, flow, bound = ref.component, ref.flow, ref.instance
    schema_type = component.props_schemas.get(flow)
    if schema_type is not None:
        parameters = TypeAdapter(schema_type).json_schema()
        parameters.pop("title", None)
    else:
        parameters = {"type": "object", "properties": {}, "additionalProperties": True}
    if bound is None:
        parameters = dict(parameters)
        parameters["properties"] = {
            "instance": {"type": "string", "description": f"Which {component.name} to ask (its id)."},
            **parameters.get("properties", {}),
        }
        parameters["required"] = ["instance", *parameters.get("required", [])]
    serve = component.serve_routes.get(flow)
    description = ref.description or (inspect.getdoc(serve.fn) if serve is not None else None)
    description = description or f"Run flow {flow!r} of {component.name}."
    writes = flow in component.update_routes

    def run(arguments: dict[str, Any]) -> tuple[Any, str | None]:
        props = dict(arguments)
        instance = bound if bound is not None else props.pop("instance", None)
        if not isinstance(instance, str) or not instance:
            raise ValueError("the argument 'instance' (a non-empty string) is required")
        scope = caller_scope.get()
        if scope is not None:
            exists = component.app.store.get_version(component.name, instance) is not None
            if not scope.allows(component.name, instance, write=writes or not exists):
                raise ToolDenied(f"the caller's scope does not reach {component.name}/{instance} flow {flow!r}")
        handle = component(instance)
        result = handle.run(flow, props)
        return result, handle.last_run_id

    return Tool(tool_name(f"{component.name}_{flow}"), description, parameters, run)


def as_tool(thing: Any) -> Tool:
    """A :class:`Tool` from a Tool, a flow (``Comp.flow(...)``), anything
    with ``as_tool()`` (a retrieval index), or a function."""
    if isinstance(thing, Tool):
        return thing
    if isinstance(thing, FlowRef):
        return flow_tool(thing)
    made = getattr(thing, "as_tool", None)
    if callable(made):
        tool = made()
        if isinstance(tool, Tool):
            return tool
    if callable(thing):
        return function_tool(thing)
    raise ModelInputError(
        f"cannot offer {thing!r} as a tool: give Comp.flow('name'), a function or a models.Tool", setting="tools"
    )


def _content(result: Any) -> str:
    text = result if isinstance(result, str) else json.dumps(result, default=repr)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"... [{len(text) - MAX_RESULT_CHARS} characters cut]"
    return text


def loop(
    model: Model,
    messages: list[dict[str, Any]],
    settings: dict[str, Any],
    offered: Sequence[Any],
    tool_choice: Any,
    max_steps: int,
    budget_usd: float | None,
    budget_tokens: int | None,
    cache: bool | str,
) -> ChatResult:
    """Ask, run the tools the model calls, give it their results, and
    again, until it answers without calling a tool."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ModelInputError(f"max_steps must be a whole number >= 1, got {max_steps!r}", setting="max_steps")
    tools = [as_tool(t) for t in offered]
    by_name = {t.name: t for t in tools}
    if len(by_name) != len(tools):
        raise ModelInputError("two tools have the same name", setting="tools")
    specs = [t.spec() for t in tools]
    msgs = list(messages)
    steps: list[ChatResult] = []
    usage, cost = Usage(), 0.0
    for step in range(max_steps):
        result = model.chat_once(msgs, settings, tools=specs, tool_choice=tool_choice if step == 0 else None,
                                 cache=cache)  # fmt: skip
        steps.append(result)
        usage, cost = usage + result.usage, cost + result.cost
        if not result.tool_calls:
            result.steps, result.usage, result.cost = steps, usage, cost
            return result
        if budget_usd is not None and cost > budget_usd:
            raise ToolLoopError(
                f"the tool loop spent ${cost:.6f}, over its budget of ${budget_usd}", limit="budget_usd", steps=step + 1
            )
        if budget_tokens is not None and usage.total_tokens > budget_tokens:
            raise ToolLoopError(
                f"the tool loop used {usage.total_tokens} tokens, over its budget of {budget_tokens}",
                limit="budget_tokens",
                steps=step + 1,
            )
        msgs.append(
            {
                "role": "assistant",
                "content": result.text or None,
                "tool_calls": [c.as_dict() for c in result.tool_calls],
            }
        )
        for call in result.tool_calls:
            msgs.append({"role": "tool", "tool_call_id": call.id, "content": _run_tool(model, by_name, call, result)})
    raise ToolLoopError(
        f"no final answer after {max_steps} steps of tool calls (max_steps={max_steps})",
        limit="max_steps",
        steps=max_steps,
    )


def _run_tool(model: Model, by_name: dict[str, Tool], call: Any, parent: ChatResult) -> str:
    """Run one tool call; what the model is told (its result, or what went
    wrong). Recorded as a ``model_calls`` row (operation ``tool``)."""
    t0, wall = time.perf_counter(), time.time()
    run, app = accounting.where(model.app)
    tool = by_name.get(call.name)
    child: str | None = None
    error: str | None = None
    content: str
    try:
        if tool is None:
            raise LookupError(f"there is no tool named {call.name!r}; tools: {sorted(by_name)}")
        try:
            arguments = call.args()
        except ValueError as exc:
            raise ValueError(f"the arguments are not JSON: {exc}") from exc
        if not isinstance(arguments, dict):
            raise ValueError("the arguments must be a JSON object")
        result, child = tool.run(arguments)
        content = _content(result)
    except ToolDenied as exc:
        error = f"denied: {exc}"
        content = f"error: {error}"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        content = f"error: {error}"
    accounting.record(
        app, run, call_id=accounting.new_call_id(), model=model.name, endpoint=model.endpoint.base_url,
        operation="tool", started=wall, latency=time.perf_counter() - t0,
        status="ok" if error is None else "error", error=error, parent_call=parent.call_id,
        note={"tool": call.name, "tool_call_id": call.id, "arguments": call.arguments, "child_run": child},
    )  # fmt: skip
    return content
