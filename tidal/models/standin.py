"""The stand-in model: a :class:`~tidal.models.backend.Backend` whose every
answer is a pure function of the request, for tests and demos.

Same request, same response, byte for byte: even ``id`` and ``created`` come
from a hash of the request (``stream`` and ``stream_options`` left out, so a
streamed answer matches the plain one). What it answers, in order:

1. a script rule that matches (``script`` below): its ``tool_calls``, its
   ``json`` or its ``answer`` / ``answers``;
2. tool calls: when the request has ``tools`` and the last message is not a
   tool result, each tool the last user message names (``get_weather`` or
   "get weather"), with arguments made from the tool's JSON schema; with
   ``tool_choice`` naming a tool or ``"required"``, that tool or the first;
3. structured output: ``response_format`` ``json_schema`` gives an instance
   of the schema, ``json_object`` the object ``{"answer": "<words>"}``;
4. after tool results: ``Tool results: <their contents>``;
5. otherwise 5 to 16 pseudo-words from :data:`~tidal.models.synth.WORDS`,
   seeded by the model, the messages, the sampling parameters (temperature,
   top_p, top_k, seed, penalties) and the choice's index, so the ``n``
   choices differ and ``max_tokens`` only cuts the same text shorter.

A token is one word with the whitespace after it. Usage counts
``prompt_tokens`` as the words of every message's text (and its tool calls)
plus :data:`MESSAGE_OVERHEAD` per message; ``completion_tokens`` as the
tokens emitted. A prompt over the context window, or a prompt plus
``max_tokens`` over it, is refused with 400 ``context_length_exceeded``.

A script is a list of rules (JSON), the first match wins::

    {"match": "score", "answer": "7"}
    {"match": "(?i)sql", "answers": ["SELECT 1", "SELECT 2"]}     # choice i gets answers[i % len]
    {"match": "weather", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}
    {"match": "Oslo", "role": "tool", "answer": "It is sunny."}  # answers after a tool result
    {"match": "extract", "json": {"name": "Ada"}, "cached_tokens": 12}

``match`` is a Python regular expression searched (``re.search``) in the
last message of ``role`` (default ``user``; the prompt on
``/v1/completions``). A rule with role ``tool`` is tried only when the last
message is a tool result, every other rule only when it is not (so a rule
that calls a tool does not call it again on the tool's answer).
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backend import BackendError
from .synth import WORDS, Draws, digest, instance

DEFAULT_CONTEXT_WINDOW = 8192
"""Tokens of prompt plus completion a request may use."""

DEFAULT_EMBEDDING_DIMENSIONS = 64
"""Length of an embedding when the request sets no ``dimensions``."""

DEFAULT_MODELS = ("stand-in", "gpt-4o-mini", "text-embedding-3-small")
"""What ``/v1/models`` lists; any other name is served too unless ``any_model=False``."""

MESSAGE_OVERHEAD = 4
"""Prompt tokens counted per chat message on top of its words."""

MAX_N = 128
MAX_TOP_LOGPROBS = 20
MAX_STOP = 4
COMPLETIONS_MAX_TOKENS = 16
"""Default ``max_tokens`` of the legacy completions endpoint (as OpenAI's)."""

SAMPLING = ("temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty")
"""Request fields mixed into the seed of the generated text."""

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
RULE_KEYS = frozenset({"match", "role", "answer", "answers", "tool_calls", "json", "cached_tokens"})


class ScriptError(ValueError):
    """Raised when a script (a list of rules) is malformed; the message says which rule and why."""


# --------------------------------------------------------------------------- script


@dataclass(frozen=True)
class ToolCall:
    """A scripted tool call: the tool's name and its arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """One rule of a script (the module docstring shows the JSON form)."""

    match: re.Pattern[str]
    role: str = "user"
    answers: tuple[str, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    json: Any = None
    has_json: bool = False
    cached_tokens: int = 0

    @classmethod
    def parse(cls, data: Any, where: str = "rule") -> Rule:
        """A rule from its JSON form; :class:`ScriptError` if malformed."""
        if not isinstance(data, dict):
            raise ScriptError(f"{where}: expected an object, got {data!r}")
        unknown = set(data) - RULE_KEYS
        if unknown:
            raise ScriptError(f"{where}: unknown keys {sorted(unknown)}; a rule has {sorted(RULE_KEYS)}")
        try:
            pattern = re.compile(str(data.get("match", "")))
        except re.error as exc:
            raise ScriptError(f"{where}: 'match' is not a regular expression ({exc})") from exc
        role = data.get("role", "user")
        if role not in ROLES:
            raise ScriptError(f"{where}: 'role' must be one of {sorted(ROLES)}, got {role!r}")
        answers = data.get("answers", [data["answer"]] if "answer" in data else [])
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise ScriptError(f"{where}: 'answer' must be a string and 'answers' a list of strings")
        if "answers" in data and not answers:
            raise ScriptError(f"{where}: 'answers' is empty")
        if answers and "json" in data:
            raise ScriptError(f"{where}: give 'json' or 'answer'/'answers', not both")
        calls = []
        for call in data.get("tool_calls", []):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise ScriptError(f"{where}: each tool call needs a 'name', got {call!r}")
            arguments = call.get("arguments", {})
            if not isinstance(arguments, dict):
                raise ScriptError(f"{where}: tool call arguments must be an object, got {arguments!r}")
            calls.append(ToolCall(call["name"], arguments))
        cached = data.get("cached_tokens", 0)
        if not isinstance(cached, int) or isinstance(cached, bool) or cached < 0:
            raise ScriptError(f"{where}: 'cached_tokens' must be an integer >= 0, got {cached!r}")
        if not (answers or calls or "json" in data):
            raise ScriptError(f"{where}: give one of 'answer', 'answers', 'tool_calls' or 'json'")
        return cls(pattern, role, tuple(answers), tuple(calls), data.get("json"), "json" in data, cached)

    def content(self, choice: int) -> str | None:
        """The scripted message content of choice ``choice``, if any."""
        if self.has_json:
            return json.dumps(self.json)
        return self.answers[choice % len(self.answers)] if self.answers else None


def parse_script(data: Any) -> tuple[Rule, ...]:
    """Rules from a JSON list of rules (or ``{"rules": [...]}``)."""
    if isinstance(data, dict) and "rules" in data:
        data = data["rules"]
    if not isinstance(data, list):
        raise ScriptError(f"a script is a JSON list of rules, got {type(data).__name__}")
    return tuple(Rule.parse(rule, f"rule {i}") for i, rule in enumerate(data))


def load_script(path: str | Path) -> tuple[Rule, ...]:
    """Rules from a JSON file (see :func:`parse_script`)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ScriptError(f"cannot read the script {path}: {exc}") from exc
    return parse_script(data)


# --------------------------------------------------------------------------- text


def tokenize(text: str) -> list[str]:
    """``text`` cut into tokens: each word with the whitespace after it."""
    return re.findall(r"\S+\s*|\s+", text)


def word_count(text: str) -> int:
    return len(text.split())


def message_text(message: dict[str, Any]) -> str:
    """The text of a message: its string content, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Words of each message's text and tool calls, plus :data:`MESSAGE_OVERHEAD` per message."""
    total = 0
    for message in messages:
        total += MESSAGE_OVERHEAD + word_count(message_text(message))
        for call in message.get("tool_calls") or []:
            function = call.get("function", {}) if isinstance(call, dict) else {}
            total += word_count(f"{function.get('name', '')} {function.get('arguments', '')}")
    return total


def _logprob(draws: Draws) -> float:
    """A logprob in (-5, 0)."""
    return -round(0.001 + 4.998 * draws.unit(), 6)


def _alternatives(token: str, logprob: float, k: int, draws: Draws) -> list[tuple[str, float]]:
    """``k`` (token, logprob) pairs, the chosen token among them, most likely first;
    the others share what the chosen token leaves of the probability."""
    if k == 0:
        return []
    tail = token[len(token.rstrip()) :]
    rest = 1.0 - math.exp(logprob)
    others: list[tuple[str, float]] = []
    while len(others) < k - 1:
        alt = draws.choice(WORDS) + tail
        if alt != token and all(alt != o for o, _ in others):
            others.append((alt, round(math.log(rest * 0.5 ** (len(others) + 1)), 6)))
    return sorted([(token, logprob), *others], key=lambda pair: -pair[1])


def _logprob_entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top],
    }


# --------------------------------------------------------------------------- checks


def _invalid(param: str, expected: str, value: Any) -> BackendError:
    return BackendError(
        400, f"Invalid '{param}': expected {expected}, but got {value!r} instead.", code="invalid_value", param=param
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_number(request: dict[str, Any], param: str, low: float, high: float, *, open_low: bool = False) -> None:
    value = request.get(param)
    if value is None:
        return
    if not _is_number(value) or value > high or value < low or (open_low and value == low):
        bound = f"> {low}" if open_low else f">= {low}"
        raise _invalid(param, f"a number {bound} and <= {high}", value)


def _check_int(request: dict[str, Any], param: str, low: int, high: int | None = None) -> None:
    value = request.get(param)
    if value is None:
        return
    if not _is_int(value) or value < low or (high is not None and value > high):
        raise _invalid(param, f"an integer >= {low}" + (f" and <= {high}" if high is not None else ""), value)


def _check_sampling(request: dict[str, Any]) -> None:
    """OpenAI's range checks of the sampling parameters, each a 400 naming its parameter."""
    _check_number(request, "temperature", 0, 2)
    _check_number(request, "top_p", 0, 1, open_low=True)
    _check_number(request, "presence_penalty", -2, 2)
    _check_number(request, "frequency_penalty", -2, 2)
    _check_int(request, "n", 1, MAX_N)
    _check_int(request, "max_tokens", 1)
    _check_int(request, "max_completion_tokens", 1)
    _check_int(request, "top_k", -1)
    if request.get("seed") is not None and not _is_int(request["seed"]):
        raise _invalid("seed", "an integer", request["seed"])
    stop = request.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or len(stops) > MAX_STOP or not all(isinstance(s, str) for s in stops):
            raise _invalid("stop", f"a string or a list of at most {MAX_STOP} strings", stop)


def _model(request: dict[str, Any]) -> str:
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise BackendError(400, "you must provide a model parameter", code="missing_required_parameter", param="model")
    return model


def _stops(request: dict[str, Any]) -> list[str]:
    stop = request.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    return [s for s in stops if s]


@dataclass
class _Choice:
    index: int
    tokens: list[str]
    finish_reason: str
    logprobs: list[float] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    call_tokens: int = 0

    @property
    def content(self) -> str | None:
        return None if self.tool_calls and not self.tokens else "".join(self.tokens)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens) + self.call_tokens


def _cut(tokens: list[str], limit: int, stops: list[str]) -> tuple[list[str], str]:
    """The tokens emitted under ``max_tokens`` = ``limit`` and the ``stop``
    strings (left out of the text, as OpenAI does), and the finish reason."""
    emitted = tokens[:limit]
    text = "".join(emitted)
    found = [text.find(s) for s in stops if s in text]
    if found:
        end, kept, pos = min(found), [], 0
        for token in emitted:
            if pos >= end:
                break
            kept.append(token[: end - pos])
            pos += len(token)
        return kept, "stop"
    return emitted, "length" if len(tokens) > limit else "stop"


# --------------------------------------------------------------------------- the backend


class StandIn:
    """The stand-in model (see the module docstring).

    ``script`` is a list of rules (or parsed :class:`Rule` objects);
    :meth:`set_script` replaces it while serving. ``context_window`` bounds
    prompt plus completion tokens; ``embedding_dimensions`` is the default
    embedding length; ``models`` is what ``/v1/models`` lists, and with
    ``any_model=False`` the only names served (else 404).
    """

    def __init__(
        self,
        *,
        script: Sequence[Rule | dict[str, Any]] = (),
        context_window: int = DEFAULT_CONTEXT_WINDOW,
        embedding_dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS,
        models: Sequence[str] = DEFAULT_MODELS,
        any_model: bool = True,
    ) -> None:
        if context_window < 1 or embedding_dimensions < 1:
            raise ValueError("context_window and embedding_dimensions must be >= 1")
        self.context_window = context_window
        self.embedding_dimensions = embedding_dimensions
        self._models = list(models)
        self.any_model = any_model
        self.script: tuple[Rule, ...] = ()
        self.set_script(script)

    def set_script(self, rules: Sequence[Rule | dict[str, Any]]) -> None:
        """Replace the script (dict rules are parsed; :class:`ScriptError` if malformed)."""
        self.script = tuple(r if isinstance(r, Rule) else Rule.parse(r, f"rule {i}") for i, r in enumerate(rules))

    def models(self) -> list[str]:
        return list(self._models)

    # ------------------------------------------------------------------ chat

    def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        plan = self._chat(request)
        logprobs = bool(request.get("logprobs"))
        top = request.get("top_logprobs") or 0
        choices = []
        for choice in plan.choices:
            message: dict[str, Any] = {"role": "assistant", "content": choice.content, "refusal": None}
            if choice.tool_calls:
                message["tool_calls"] = choice.tool_calls
            entries = None
            if logprobs:
                entries = {"content": list(self._entries(plan.seed, choice, top)), "refusal": None}
            choices.append(
                {"index": choice.index, "message": message, "logprobs": entries, "finish_reason": choice.finish_reason}
            )
        return {**plan.head("chat.completion"), "choices": choices, "usage": plan.usage}

    def chat_stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        plan = self._chat(request)  # checks the request now, before the first chunk
        return self._chunks(request, plan)

    def _chunks(self, request: dict[str, Any], plan: _Plan) -> Iterator[dict[str, Any]]:
        head = plan.head("chat.completion.chunk")
        with_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        logprobs = bool(request.get("logprobs"))
        top = request.get("top_logprobs") or 0

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> dict[str, Any]:
            out = {**head, "choices": [{"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}]}
            return {**out, "usage": None} if with_usage else out

        for choice in plan.choices:
            yield chunk(
                choice.index, {"role": "assistant", "content": "" if choice.tokens or not choice.tool_calls else None}
            )
            entries = self._entries(plan.seed, choice, top) if logprobs else None
            for token in choice.tokens:
                lp = {"content": [next(entries)], "refusal": None} if entries is not None else None
                yield chunk(choice.index, {"content": token}, lp=lp)
            for k, call in enumerate(choice.tool_calls):
                function = call["function"]
                opening = {"index": k, "id": call["id"], "type": "function"}
                yield chunk(
                    choice.index, {"tool_calls": [{**opening, "function": {"name": function["name"], "arguments": ""}}]}
                )
                arguments = function["arguments"]
                for start in range(0, len(arguments), 16):
                    piece = {"index": k, "function": {"arguments": arguments[start : start + 16]}}
                    yield chunk(choice.index, {"tool_calls": [piece]})
            yield chunk(choice.index, {}, choice.finish_reason)
        if with_usage:
            yield {**head, "choices": [], "usage": plan.usage}

    def _entries(self, seed: str, choice: _Choice, top: int) -> Iterator[dict[str, Any]]:
        draws = Draws(seed, "alternatives", choice.index)
        for token, lp in zip(choice.tokens, choice.logprobs, strict=True):
            yield _logprob_entry(token, lp, _alternatives(token, lp, top, draws))

    def _chat(self, request: dict[str, Any]) -> _Plan:
        model = self._check_model(request)
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _invalid("messages", "a non-empty list of messages", messages)
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise _invalid(f"messages[{i}]", f"a message with a role in {sorted(ROLES)}", message)
        _check_sampling(request)
        if request.get("logprobs") is not None and not isinstance(request["logprobs"], bool):
            raise _invalid("logprobs", "a boolean", request["logprobs"])
        _check_int(request, "top_logprobs", 0, MAX_TOP_LOGPROBS)
        if request.get("top_logprobs") and not request.get("logprobs"):
            raise BackendError(
                400, "'top_logprobs' needs 'logprobs' set to true.", code="invalid_value", param="top_logprobs"
            )
        used = prompt_tokens(messages)
        limit = self._limit(request, used, "messages")
        seed = digest(model, messages, {k: request.get(k) for k in SAMPLING})
        last_role = messages[-1]["role"]
        rule = self._rule(messages, after_tool=last_role == "tool")
        choices = [self._choice(request, messages, rule, seed, i, limit) for i in range(request.get("n") or 1)]
        cached = min(rule.cached_tokens, used) if rule else 0
        return _Plan(request, model, seed, choices, _usage(used, choices, cached))

    def _choice(
        self, request: dict[str, Any], messages: list[dict[str, Any]], rule: Rule | None, seed: str, i: int, limit: int
    ) -> _Choice:
        draws = Draws(seed, "choice", i)
        lps = Draws(seed, "logprobs", i)
        calls = self._tool_calls(request, messages, rule, seed, i)
        if calls:
            tokens = tokenize((rule.content(i) if rule else None) or "")
            call_tokens = sum(word_count(f"{c['function']['name']} {c['function']['arguments']}") for c in calls)
            return _Choice(i, tokens, "tool_calls", [_logprob(lps) for _ in tokens], calls, call_tokens)
        tokens, finish = _cut(tokenize(self._text(request, messages, rule, draws, i)), limit, _stops(request))
        return _Choice(i, tokens, finish, [_logprob(lps) for _ in tokens])

    def _text(
        self, request: dict[str, Any], messages: list[dict[str, Any]], rule: Rule | None, draws: Draws, i: int
    ) -> str:
        scripted = rule.content(i) if rule else None
        if scripted is not None:
            return scripted
        response_format = request.get("response_format") or {}
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
            try:
                return json.dumps(instance(schema, draws))
            except (KeyError, TypeError, ValueError) as exc:
                raise _invalid("response_format", "a JSON schema the stand-in can follow", str(exc)) from exc
        if kind == "json_object":
            return json.dumps({"answer": " ".join(draws.words(draws.between(3, 8)))})
        if messages[-1]["role"] == "tool":
            results = []
            for message in reversed(messages):
                if message["role"] != "tool":
                    break
                results.append(message_text(message))
            return "Tool results: " + " | ".join(reversed(results))
        return " ".join(draws.words(draws.between(5, 16)))

    def _tool_calls(
        self, request: dict[str, Any], messages: list[dict[str, Any]], rule: Rule | None, seed: str, i: int
    ) -> list[dict[str, Any]]:
        choice = request.get("tool_choice", "auto")
        if choice == "none":
            return []
        if rule and rule.tool_calls:  # a rule of role "tool" may call again after a result
            return [_call(c.name, c.arguments, seed, i, k) for k, c in enumerate(rule.tool_calls)]
        if messages[-1]["role"] == "tool":
            return []
        tools = {
            t["function"]["name"]: t["function"]
            for t in request.get("tools") or []
            if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict)
        }
        if not tools or rule is not None:
            return []
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if name not in tools:
                raise _invalid("tool_choice", f"the name of a tool in 'tools' ({sorted(tools)})", name)
            names = [str(name)]
        else:
            said = _last_text(messages, "user")
            names = [n for n in tools if _mentions(said, n)]
            if not names and choice == "required":
                names = [next(iter(tools))]
        if request.get("parallel_tool_calls") is False:
            names = names[:1]
        calls = []
        for k, name in enumerate(names):
            parameters = tools[name].get("parameters") or {"type": "object", "properties": {}}
            calls.append(_call(name, instance(parameters, Draws(seed, "tool", i, name)), seed, i, k))
        return calls

    def _rule(self, messages: list[dict[str, Any]], *, after_tool: bool) -> Rule | None:
        for rule in self.script:
            if (rule.role == "tool") != after_tool:
                continue
            if rule.match.search(_last_text(messages, rule.role)):
                return rule
        return None

    def _check_model(self, request: dict[str, Any]) -> str:
        model = _model(request)
        if not self.any_model and model not in self._models:
            raise BackendError(
                404, f"The model '{model}' does not exist or you do not have access to it.", code="model_not_found"
            )
        return model

    def _limit(self, request: dict[str, Any], used: int, param: str) -> int:
        """How many tokens the completion may have; 400 when the prompt (plus
        ``max_tokens``) does not fit the context window."""
        asked = request.get("max_completion_tokens") or request.get("max_tokens")
        if used + (asked or 0) > self.context_window or used >= self.context_window:
            detail = f" ({used} in the prompt, {asked} in the completion)" if asked else f" ({used} in the prompt)"
            raise BackendError(
                400,
                f"This model's maximum context length is {self.context_window} tokens. "
                f"However, you requested {used + (asked or 0)} tokens{detail}. Please reduce the length of the prompt.",
                code="context_length_exceeded",
                param=param,
            )
        return int(asked) if asked else self.context_window - used

    # ------------------------------------------------------------------ completions

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """The legacy completions endpoint: ``n`` choices per prompt, ``max_tokens``
        16 by default, ``logprobs`` (0 to 5) in the legacy shape, ``echo``."""
        model = self._check_model(request)
        prompt = request.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise _invalid("prompt", "a string or a list of strings (token ids are not supported)", prompt)
        _check_sampling(request)
        _check_int(request, "logprobs", 0, 5)
        k = request.get("logprobs")
        used = sum(word_count(p) for p in prompts)
        asked = request.get("max_tokens") or COMPLETIONS_MAX_TOKENS
        limit = self._limit({"max_tokens": asked}, used, "prompt")
        n = request.get("n") or 1
        choices, emitted = [], 0
        for p, text in enumerate(prompts):
            seed = digest(model, text, {key: request.get(key) for key in SAMPLING})
            rule = next((r for r in self.script if r.role != "tool" and r.match.search(text)), None)
            for j in range(n):
                draws = Draws(seed, "choice", j)
                scripted = rule.content(j) if rule else None
                words = scripted if scripted is not None else " ".join(draws.words(draws.between(5, 16)))
                tokens, finish = _cut(tokenize(words), limit, _stops(request))
                emitted += len(tokens)
                lps = Draws(seed, "logprobs", j)
                logprobs = [_logprob(lps) for _ in tokens]
                legacy = None
                if k is not None:
                    legacy = _legacy_logprobs(tokens, logprobs, k, Draws(seed, "alternatives", j))
                prefix = text if request.get("echo") else ""
                choices.append(
                    {"index": p * n + j, "text": prefix + "".join(tokens), "logprobs": legacy, "finish_reason": finish}
                )
        rid = digest("completion", {k: v for k, v in request.items() if k not in ("stream", "stream_options")})
        return {
            "id": f"cmpl-{rid[:24]}",
            "object": "text_completion",
            "created": _created(rid),
            "model": model,
            "system_fingerprint": "fp_stand_in",
            "choices": choices,
            "usage": {"prompt_tokens": used, "completion_tokens": emitted, "total_tokens": used + emitted},
        }

    # ------------------------------------------------------------------ embeddings

    def embed(self, request: dict[str, Any]) -> dict[str, Any]:
        """Hashed bags of words and character trigrams, L2-normalised: texts
        that share words (or word pieces) point the same way."""
        model = self._check_model(request)
        given = request.get("input")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise _invalid("input", "a non-empty string or a list of them (token ids are not supported)", given)
        _check_int(request, "dimensions", 1, 4096)
        dimensions = request.get("dimensions") or self.embedding_dimensions
        encoding = request.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _invalid("encoding_format", "'float' or 'base64'", encoding)
        counts = [word_count(t) for t in texts]
        for i, count in enumerate(counts):
            if count > self.context_window:
                raise BackendError(
                    400,
                    f"This model's maximum context length is {self.context_window} tokens, "
                    f"however input {i} has {count} tokens.",
                    code="context_length_exceeded",
                    param="input",
                )
        data = []
        for i, text in enumerate(texts):
            vector = embedding(text, dimensions)
            value: list[float] | str = vector
            if encoding == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        used = sum(counts)
        return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": used, "total_tokens": used}}


def embedding(text: str, dimensions: int) -> list[float]:
    """The stand-in's embedding of ``text``: each lowercased word adds 1 and
    each of its character trigrams 0.5 to a hashed, signed coordinate."""
    vector = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()):
        padded = f" {word} "
        features = [(word, 1.0)] + [("#" + padded[i : i + 3], 0.5) for i in range(len(padded) - 2)]
        for feature, weight in features:
            h = int(digest(feature)[:16], 16)
            vector[h % dimensions] += weight if (h >> 32) & 1 else -weight
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        vector[int(digest(text)[:8], 16) % dimensions] = norm = 1.0
    return [round(x / norm, 7) for x in vector]


# --------------------------------------------------------------------------- helpers


def _last_text(messages: list[dict[str, Any]], role: str) -> str:
    for message in reversed(messages):
        if message.get("role") == role:
            return message_text(message)
    return ""


def _mentions(text: str, tool: str) -> bool:
    """Whether ``text`` names ``tool`` (``get_weather``, or "get weather")."""
    spaced = re.escape(tool).replace("_", "[ _]").replace("\\-", "[ \\-]")
    return re.search(rf"(?<!\w){spaced}(?!\w)", text, re.IGNORECASE) is not None


def _call(name: str, arguments: dict[str, Any], seed: str, choice: int, k: int) -> dict[str, Any]:
    return {
        "id": f"call_{digest(seed, 'call', choice, k, name)[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def _created(rid: str) -> int:
    """A fixed ``created`` time from the request's hash (late 2023 to mid 2024)."""
    return 1_700_000_000 + int(rid[:6], 16) % 20_000_000


def _usage(used: int, choices: list[_Choice], cached: int) -> dict[str, Any]:
    emitted = sum(c.completion_tokens for c in choices)
    return {
        "prompt_tokens": used,
        "completion_tokens": emitted,
        "total_tokens": used + emitted,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _legacy_logprobs(tokens: list[str], logprobs: list[float], k: int, draws: Draws) -> dict[str, Any]:
    offsets, pos = [], 0
    for token in tokens:
        offsets.append(pos)
        pos += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": logprobs,
        "top_logprobs": [dict(_alternatives(t, lp, max(k, 1), draws)) for t, lp in zip(tokens, logprobs, strict=True)],
        "text_offset": offsets,
    }


@dataclass
class _Plan:
    """A chat answer worked out before it is shaped as one object or as chunks."""

    request: dict[str, Any]
    model: str
    seed: str
    choices: list[_Choice]
    usage: dict[str, Any]

    def head(self, kind: str) -> dict[str, Any]:
        rid = digest("chat", {k: v for k, v in self.request.items() if k not in ("stream", "stream_options")})
        return {
            "id": f"chatcmpl-{rid[:24]}",
            "object": kind,
            "created": _created(rid),
            "model": self.model,
            "system_fingerprint": "fp_stand_in",
        }
