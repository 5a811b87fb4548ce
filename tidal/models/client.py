"""The model client: one :class:`Model` per endpoint and model.

A call goes: settings checked (nothing sent on a bad value) → exact cache
(deterministic calls) or semantic cache (when asked) → the shared rate
limits → the request through the ``openai`` client, retried with backoff
on 429, 5xx, timeouts and lost connections (``Retry-After`` honoured) → the
answer parsed, priced and recorded as a ``model_calls`` row of the run the
call was made in (see :mod:`tidal.models.accounting`).

The ``openai`` client's own retries are off (``max_retries=0``): the loop
here counts them for the runs log, spends the rate limit on each try, and
gives up with an error that says how many there were.
"""

from __future__ import annotations

import asyncio
import base64
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import openai
import orjson

from ..context import CurrentRun
from ..stores.memory import MemoryStore
from . import accounting, params, structured
from . import sampling as choosing
from . import tools as toolkit
from .cache import DEFAULT_TTL, ResponseCache, SemanticCache, request_key
from .endpoints import Endpoint, parse
from .errors import ModelCallError, ModelConfigError, ModelInputError, ModelStreamError
from .pricing import ModelInfo, prices
from .results import ChatResult, Choice, ToolCall, Usage

if TYPE_CHECKING:
    from pydantic import BaseModel

RETRYABLE = frozenset({408, 409, 429})
"""HTTP statuses retried (and every 5xx)."""

MAX_RETRY_AFTER = 120.0
"""A ``Retry-After`` longer than this is not waited for: the call fails."""

_local_limits = MemoryStore()
"""Rate limits of models used outside any app: this process only."""


@dataclass(frozen=True, slots=True)
class _Call:
    """A call on its way: what is sent and where it is recorded."""

    operation: str
    body: dict[str, Any]
    run: CurrentRun | None
    app: Any
    call_id: str
    t0: float
    wall: float
    key: bytes | None
    semantic: tuple[bytes, str] | None
    tokens: int


class Model:
    """A model behind an OpenAI-compatible endpoint (see :func:`connect`)."""

    def __init__(
        self,
        url: str,
        *,
        app: Any = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        rpm: float | None = None,
        tpm: float | None = None,
        cache: bool = True,
        cache_ttl: float = DEFAULT_TTL,
        semantic_cache: SemanticCache | None = None,
        info: ModelInfo | None = None,
        context_window: int | None = None,
        defaults: dict[str, Any] | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.endpoint: Endpoint = parse(url, api_key=api_key, model=model)
        for name, value in (("timeout", timeout), ("backoff", backoff), ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ModelConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ModelConfigError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        for name, limit in (("rpm", rpm), ("tpm", tpm)):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0):
                raise ModelConfigError(f"{name} must be a number > 0 (per minute), got {limit!r}")
        self.app = app
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.rpm = rpm
        self.tpm = tpm
        self.cache = ResponseCache(ttl=cache_ttl) if cache else None
        self.semantic_cache = semantic_cache
        self._info = info
        self._window = context_window
        self.defaults = params.check(defaults or {})
        self._headers = dict(extra_headers or {})
        self._client = openai.OpenAI(
            base_url=self.endpoint.base_url,
            api_key=self.endpoint.api_key,
            max_retries=0,
            timeout=self.timeout,
            default_headers=self._headers or None,
        )
        self._aclient: openai.AsyncOpenAI | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._alock = threading.Lock()

    # -- identity -----------------------------------------------------------

    @property
    def name(self) -> str:
        """The model's name at its endpoint."""
        return self.endpoint.model

    @property
    def info(self) -> ModelInfo:
        """Price and context window (given, else from ``models.prices``)."""
        return self._info or prices.get(self.name) or ModelInfo()

    def __repr__(self) -> str:
        return f"<Model {self.endpoint.label}>"

    def close(self) -> None:
        """Close the HTTP connections (those of async calls: ``aclose``)."""
        self._client.close()

    async def aclose(self) -> None:
        """Close the connections of async calls made on this event loop."""
        client, self._aclient = self._aclient, None
        if client is not None:
            await client.close()

    @property
    def aclient(self) -> openai.AsyncOpenAI:
        """The async wire client of the running event loop (made on first
        use there: its connections belong to that loop)."""
        loop = asyncio.get_running_loop()
        with self._alock:
            if self._aclient is None or self._aloop is not loop:
                self._aloop = loop
                self._aclient = openai.AsyncOpenAI(
                    base_url=self.endpoint.base_url,
                    api_key=self.endpoint.api_key,
                    max_retries=0,
                    timeout=self.timeout,
                    default_headers=self._headers or None,
                )
            return self._aclient

    # -- calls --------------------------------------------------------------

    def chat(
        self,
        messages: Any,
        *,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        max_steps: int = 8,
        budget_usd: float | None = None,
        budget_tokens: int | None = None,
        response_format: dict[str, Any] | None = None,
        cache: bool | str = True,
        extra_body: dict[str, Any] | None = None,
        **sampling: Any,
    ) -> ChatResult:
        """Ask the model. ``messages``: a string (one user message) or chat
        messages. ``sampling``: temperature, top_p, top_k, n, seed,
        max_tokens, stop, logprobs, top_logprobs, ... (checked first).

        With ``tools`` (flows ``Comp.flow("name")``, functions, or
        :class:`~tidal.models.tools.Tool`), the model may call them: each
        call runs (a flow as a child run, under the caller's scope), its
        result goes back to the model, until it answers or ``max_steps`` /
        the budget is reached (ToolLoopError).

        ``cache``: True (exact cache for deterministic calls), False, or
        ``"semantic"`` (also the semantic cache, when the model has one)."""
        msgs = params.messages_of(messages)
        settings = self._settings(sampling)
        if tools:
            return toolkit.loop(self, msgs, settings, tools, tool_choice, max_steps, budget_usd, budget_tokens, cache)
        return self.chat_once(msgs, settings, tool_choice=tool_choice, response_format=response_format,
                              cache=cache, extra_body=extra_body)  # fmt: skip

    def chat_once(
        self,
        messages: list[dict[str, Any]],
        settings: dict[str, Any],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        response_format: dict[str, Any] | None = None,
        cache: bool | str = True,
        extra_body: dict[str, Any] | None = None,
        parent_call: str | None = None,
    ) -> ChatResult:
        """One request with checked ``settings`` (the building block of
        :meth:`chat` and the helpers)."""
        body = self._chat_body(messages, settings, tools, tool_choice, response_format, extra_body)
        call = self._begin("chat", body, cache, messages)
        hit = self._cached(call, parent_call)
        if hit is not None:
            return hit
        self._wait_for_limits(call)
        response, retries = self._send(call, self._client.chat.completions.with_raw_response.create)
        return self._finish(call, response.content, retries, parent_call=parent_call)

    async def achat(
        self,
        messages: Any,
        *,
        tool_choice: Any = None,
        response_format: dict[str, Any] | None = None,
        cache: bool | str = True,
        extra_body: dict[str, Any] | None = None,
        **sampling: Any,
    ) -> ChatResult:
        """:meth:`chat` for async code (no tools loop)."""
        msgs = params.messages_of(messages)
        body = self._chat_body(msgs, self._settings(sampling), None, tool_choice, response_format, extra_body)
        call = self._begin("chat", body, cache, msgs)
        hit = self._cached(call, None)
        if hit is not None:
            return hit
        await self._await_limits(call)
        response, retries = await self._asend(call, self.aclient.chat.completions.with_raw_response.create)
        return self._finish(call, response.content, retries)

    def complete(self, prompt: str, *, cache: bool = True, **sampling: Any) -> ChatResult:
        """A plain-text completion of ``prompt`` (the completions API)."""
        if not isinstance(prompt, str):
            raise ModelInputError(f"prompt must be a string, got {type(prompt).__name__}", setting="prompt")
        settings = self._settings(sampling)
        body = {"model": self.name, "prompt": prompt, **_openai(settings)}
        _extra(body, settings, None)
        call = self._begin("completion", body, cache, [{"role": "user", "content": prompt}])
        hit = self._cached(call, None)
        if hit is not None:
            return hit
        self._wait_for_limits(call)
        response, retries = self._send(call, self._client.completions.with_raw_response.create)
        return self._finish(call, response.content, retries)

    def embed(self, texts: Sequence[str], *, dimensions: int | None = None) -> np.ndarray:
        """Embeddings of ``texts`` (one row each, float32) from the
        endpoint's embeddings API; cached like deterministic calls."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ModelInputError("texts must be a list of strings", setting="texts")
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        body: dict[str, Any] = {"model": self.name, "input": list(texts)}
        if dimensions is not None:
            params._integer("dimensions", dimensions, 1)
            body["dimensions"] = dimensions
        call = self._begin("embedding", body, True, [{"role": "user", "content": t} for t in texts], exact=True)
        raw: bytes | None = None
        if call.key is not None and self.cache is not None:
            raw = self.cache.get(_store(call.app), call.key)
        retries, hit = 0, raw is not None
        if raw is None:
            self._wait_for_limits(call)
            response, retries = self._send(call, self._client.embeddings.with_raw_response.create)
            raw = response.content
        data = orjson.loads(raw)
        rows = sorted(data.get("data") or (), key=lambda d: d.get("index", 0))
        vectors = np.asarray([_vector(r["embedding"]) for r in rows], dtype=np.float32)
        usage = Usage.of(data.get("usage"))
        cost = 0.0 if hit else self.info.cost(usage.prompt_tokens, 0)
        self._record(call, usage=usage, cost=cost, retries=retries, cache_hit="exact" if hit else None)
        if not hit and call.key is not None and self.cache is not None:
            self.cache.set(_store(call.app), call.key, raw)
        return vectors

    def stream(self, messages: Any, *, cache: bool = True, extra_body: dict[str, Any] | None = None,
               **sampling: Any) -> ChatStream:  # fmt: skip
        """Stream the answer: iterate for text pieces as they come (a
        generator serve op can ``yield from`` it); ``.result`` once done.
        A stream that breaks off raises ModelStreamError (never ends quietly)."""
        msgs = params.messages_of(messages)
        settings = self._settings(sampling)
        body = self._chat_body(msgs, settings, None, None, None, extra_body)
        return ChatStream(self, self._begin("chat", body, cache, msgs))

    def astream(self, messages: Any, *, cache: bool = True, extra_body: dict[str, Any] | None = None,
                **sampling: Any) -> AsyncChatStream:  # fmt: skip
        """:meth:`stream` for async code (``async for piece in ...``)."""
        msgs = params.messages_of(messages)
        settings = self._settings(sampling)
        body = self._chat_body(msgs, settings, None, None, None, extra_body)
        return AsyncChatStream(self, self._begin("chat", body, cache, msgs))

    # -- helpers over calls -------------------------------------------------

    def structured(self, messages: Any, schema: type[BaseModel], *, retries: int = 2, **sampling: Any) -> Any:
        """An answer as an instance of the pydantic model ``schema``: asked
        for as JSON of its schema; a reply that does not validate is shown
        its errors and asked again, up to ``retries`` more times
        (StructuredOutputError then, with the last raw output)."""
        return structured.ask(self, params.messages_of(messages), self._settings(sampling), schema, retries)

    def best_of(self, messages: Any, n: int = 5, *, by: Any = "logprob", **sampling: Any) -> ChatResult:
        """``n`` candidates, the best first: by mean token log probability
        (``by="logprob"``) or by a scorer (``by=callable(text) -> float``, a
        judge). ``result.note`` says each candidate's score and which won."""
        return choosing.best_of(self, params.messages_of(messages), self._settings(sampling), n, by)

    def self_consistency(self, messages: Any, n: int = 5, *, answer: Any = None, **sampling: Any) -> ChatResult:
        """``n`` samples and a majority vote over their answers
        (``answer(text)`` extracts the answer; default: the stripped text).
        The result's first choice is a sample of the winning answer;
        ``result.note`` holds the votes."""
        return choosing.self_consistency(self, params.messages_of(messages), self._settings(sampling), n, answer)

    # -- the pipeline -------------------------------------------------------

    def _settings(self, sampling: dict[str, Any]) -> dict[str, Any]:
        checked = params.check(sampling)
        return {**self.defaults, **checked} if self.defaults else checked

    def _chat_body(
        self,
        messages: list[dict[str, Any]],
        settings: dict[str, Any],
        tool_specs: list[dict[str, Any]] | None,
        tool_choice: Any,
        response_format: dict[str, Any] | None,
        extra_body: dict[str, Any] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.name, "messages": messages, **_openai(settings)}
        if tool_specs:
            body["tools"] = tool_specs
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        if response_format is not None:
            body["response_format"] = response_format
        _extra(body, settings, extra_body)
        return body

    def _begin(
        self, operation: str, body: dict[str, Any], cache: bool | str, messages: list[dict[str, Any]],
        *, exact: bool = False,
    ) -> _Call:  # fmt: skip
        if cache not in (True, False, "semantic", "exact"):
            raise ModelInputError(f"cache must be True, False or 'semantic', got {cache!r}", setting="cache")
        tokens = params.estimate_tokens(messages)
        window = self._window or self.info.context_window
        if window is not None and tokens + int(body.get("max_tokens") or 0) > window:
            raise ModelInputError(
                f"the prompt (about {tokens} tokens) plus max_tokens={body.get('max_tokens')} is over "
                f"{self.name}'s context window of {window} tokens",
                setting="messages",
            )
        run, app = accounting.where(self.app)
        settings = {k: body[k] for k in params.SAMPLING if k in body}
        settings.update(body.get("extra_body") or {})
        key = None
        if cache and self.cache is not None and (exact or params.deterministic(settings)):
            key = request_key(self.endpoint.base_url, operation, body)
        semantic = None
        if cache == "semantic" and self.semantic_cache is not None and messages:
            last = messages[-1]
            if last.get("role") == "user" and isinstance(last.get("content"), str):
                scope_body = {**body, "messages": messages[:-1]}
                semantic = (request_key(self.endpoint.base_url, "semantic:" + operation, scope_body), last["content"])
        return _Call(operation, body, run, app, accounting.new_call_id(), time.perf_counter(), time.time(),
                     key, semantic, tokens + int(body.get("max_tokens") or 256))  # fmt: skip

    def _cached(self, call: _Call, parent_call: str | None) -> ChatResult | None:
        """The answer from Tidal's caches, recorded as a hit; None on a miss."""
        raw, kind, similarity = None, None, None
        if call.key is not None and self.cache is not None:
            raw = self.cache.get(_store(call.app), call.key)
            kind = "exact"
        if raw is None and call.semantic is not None and self.semantic_cache is not None:
            found = self.semantic_cache.lookup(*call.semantic)
            if found is not None:
                raw, similarity, _ = found
                kind = "semantic"
        if raw is None:
            return None
        result = ChatResult.parse(orjson.loads(raw), self.name)
        result.cache_hit, result.similarity = kind, similarity
        self._record(call, usage=result.usage, cost=0.0, retries=0, cache_hit=kind, similarity=similarity,
                     parent_call=parent_call, result=result)  # fmt: skip
        return result

    def _finish(self, call: _Call, raw: bytes, retries: int, *, parent_call: str | None = None,
                ttft: float | None = None) -> ChatResult:  # fmt: skip
        try:
            data = orjson.loads(raw)
            result = ChatResult.parse(data, self.name)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            error = ModelCallError(f"{self.endpoint.label} sent a response that is not a completion: {exc}")
            self._record(call, retries=retries, error=error)
            raise error from exc
        usage = result.usage
        result.cost = self.info.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
        result.retries = retries
        result.ttft = ttft
        self._record(call, usage=usage, cost=result.cost, retries=retries, ttft=ttft, parent_call=parent_call,
                     result=result)  # fmt: skip
        if call.key is not None and self.cache is not None:
            self.cache.set(_store(call.app), call.key, raw)
        if call.semantic is not None and self.semantic_cache is not None:
            self.semantic_cache.add(call.semantic[0], call.semantic[1], raw)
        return result

    def _record(
        self,
        call: _Call,
        *,
        usage: Usage | None = None,
        cost: float = 0.0,
        retries: int = 0,
        ttft: float | None = None,
        cache_hit: str | None = None,
        similarity: float | None = None,
        error: BaseException | None = None,
        parent_call: str | None = None,
        result: ChatResult | None = None,
    ) -> None:
        latency = time.perf_counter() - call.t0
        usage = usage or Usage()
        if result is not None:
            result.latency, result.call_id = latency, call.call_id
            result.run_id = call.run.id if call.run is not None else ""
        accounting.record(
            call.app, call.run, call_id=call.call_id, model=self.name, endpoint=self.endpoint.base_url,
            operation=call.operation, started=call.wall, latency=latency,
            status="ok" if error is None else "error", prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens, cached_tokens=usage.cached_tokens, cost=cost, ttft=ttft,
            retries=retries, cache_hit=cache_hit, similarity=similarity,
            params={k: call.body[k] for k in params.SAMPLING if k in call.body} or None,
            error=None if error is None else f"{type(error).__name__}: {error}", parent_call=parent_call,
        )  # fmt: skip

    # -- rate limits ----------------------------------------------------------

    def _limits(self, call: _Call) -> list[tuple[str, float, float]]:
        out = []
        if self.rpm is not None:
            out.append((f"tidal.models:{self.endpoint.label}:rpm", 1.0, float(self.rpm)))
        if self.tpm is not None:
            out.append((f"tidal.models:{self.endpoint.label}:tpm", float(min(call.tokens, self.tpm)), float(self.tpm)))
        return out

    def _limit_wait(self, call: _Call) -> float:
        """Take this call's share of every limit; the seconds to wait first
        when one is spent (0: go)."""
        store: Any = _store(call.app) or _local_limits
        for bucket, amount, limit in self._limits(call):
            wait: float = store.rate_take(bucket, amount, limit, 60.0)
            if wait > 0:
                return wait
        return 0.0

    def _limit_deadline(self, call: _Call, waited: float, wait: float) -> None:
        if waited + wait > self.timeout:
            error = ModelCallError(
                f"{self.endpoint.label}: the rate limit (rpm={self.rpm}, tpm={self.tpm}) leaves no room "
                f"within the timeout of {self.timeout}s"
            )
            self._record(call, error=error)
            raise error

    def _wait_for_limits(self, call: _Call) -> None:
        if self.rpm is None and self.tpm is None:
            return
        waited = 0.0
        while (wait := self._limit_wait(call)) > 0:
            self._limit_deadline(call, waited, wait)
            time.sleep(wait)
            waited += wait

    async def _await_limits(self, call: _Call) -> None:
        if self.rpm is None and self.tpm is None:
            return
        waited = 0.0
        while (wait := self._limit_wait(call)) > 0:
            self._limit_deadline(call, waited, wait)
            await asyncio.sleep(wait)
            waited += wait

    # -- sending, with retries ------------------------------------------------

    def _retry_wait(self, call: _Call, exc: Exception, retries: int) -> float:
        """How long to wait before retry ``retries + 1``; raises (recorded)
        ModelCallError when the failure is not retried or retries are spent."""
        status: int | None = None
        wait: float | None = None
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retryable = status in RETRYABLE or status >= 500
            wait = _retry_after(exc.response.headers)
            what = f"HTTP {status}: {_message(exc)}"
        elif isinstance(exc, openai.APITimeoutError):
            retryable, what = True, f"timed out after {self.timeout}s"
        elif isinstance(exc, openai.APIConnectionError):
            retryable, what = True, f"connection failed: {exc.__cause__ or exc}"
        else:
            retryable, what = False, f"{type(exc).__name__}: {exc}"
        if not retryable or retries >= self.max_retries or (wait is not None and wait > MAX_RETRY_AFTER):
            tried = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
            error = ModelCallError(f"{self.endpoint.label} failed{tried}: {what}", status=status, retries=retries)
            self._record(call, retries=retries, error=error)
            raise error from exc
        if wait is None:
            wait = min(self.max_backoff, self.backoff * 2**retries) * (0.5 + random.random() / 2)
        return wait

    def _send(self, call: _Call, create: Any) -> tuple[Any, int]:
        """``create(**body)`` (a raw response, or an opened stream) and how
        many retries it took; each retry waits its turn in the rate limits."""
        retries = 0
        while True:
            try:
                return create(**call.body), retries
            except openai.OpenAIError as exc:
                wait = self._retry_wait(call, exc, retries)
            retries += 1
            time.sleep(wait)
            self._wait_for_limits(call)

    async def _asend(self, call: _Call, create: Any) -> tuple[Any, int]:
        retries = 0
        while True:
            try:
                return await create(**call.body), retries
            except openai.OpenAIError as exc:
                wait = self._retry_wait(call, exc, retries)
            retries += 1
            await asyncio.sleep(wait)
            await self._await_limits(call)


class _Stream:
    """What a streamed answer holds, sync or async."""

    def __init__(self, model: Model, call: _Call) -> None:
        self._model = model
        self._call = call
        self._pieces: list[str] = []
        self.result: ChatResult | None = None

    @property
    def text(self) -> str:
        """The text so far."""
        return "".join(self._pieces)

    def _from_cache(self) -> str | None:
        """The whole answer as one piece when a cache has it."""
        hit = self._model._cached(self._call, None)
        if hit is None:
            return None
        self.result = hit
        self._pieces.append(hit.text)
        return hit.text

    def _take(self, acc: _Accumulator, chunk: Any) -> str:
        piece = acc.add(chunk)
        if piece:
            self._pieces.append(piece)
        return piece


class ChatStream(_Stream):
    """A streamed answer: iterate for text pieces; ``result`` when done.
    Any failure once the stream is open (the connection cut, the server's
    error) raises ModelStreamError with the text so far."""

    def __iter__(self) -> Iterator[str]:
        model, call = self._model, self._call
        cached = self._from_cache()
        if cached is not None:
            yield cached
            return
        model._wait_for_limits(call)
        stream, retries = model._send(call, _streaming(model._client.chat.completions.create))
        acc = _Accumulator(model, call)
        try:
            for chunk in stream:
                piece = self._take(acc, chunk)
                if piece:
                    yield piece
        except Exception as exc:
            raise acc.broken(exc, retries) from exc
        finally:
            stream.close()
        self.result = acc.finish(retries)


class AsyncChatStream(_Stream):
    """:class:`ChatStream` for async code."""

    async def __aiter__(self) -> AsyncIterator[str]:
        model, call = self._model, self._call
        cached = self._from_cache()
        if cached is not None:
            yield cached
            return
        await model._await_limits(call)
        stream, retries = await model._asend(call, _astreaming(model.aclient.chat.completions.create))
        acc = _Accumulator(model, call)
        try:
            async for chunk in stream:
                piece = self._take(acc, chunk)
                if piece:
                    yield piece
        except Exception as exc:
            raise acc.broken(exc, retries) from exc
        finally:
            await stream.close()
        self.result = acc.finish(retries)


class _Accumulator:
    """Builds a complete answer from stream chunks."""

    def __init__(self, model: Model, call: _Call) -> None:
        self.model = model
        self.call = call
        self.texts: dict[int, list[str]] = {}
        self.reasons: dict[int, str | None] = {}
        self.tools: dict[int, dict[int, dict[str, str]]] = {}
        self.usage: Any = None
        self.ttft: float | None = None
        self.name = model.name

    def add(self, chunk: Any) -> str:
        """Take a chunk; returns the first choice's new text."""
        if chunk.usage is not None:
            self.usage = chunk.usage.model_dump()
        if chunk.model:
            self.name = chunk.model
        out = ""
        for choice in chunk.choices:
            delta = choice.delta
            if delta is not None and delta.content:
                if self.ttft is None:
                    self.ttft = time.perf_counter() - self.call.t0
                self.texts.setdefault(choice.index, []).append(delta.content)
                if choice.index == 0:
                    out = delta.content
            if delta is not None and delta.tool_calls:
                calls = self.tools.setdefault(choice.index, {})
                for tc in delta.tool_calls:
                    slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    if tc.id:
                        slot["id"] = tc.id
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
            if choice.finish_reason is not None:
                self.reasons[choice.index] = choice.finish_reason
        return out

    def _body(self) -> dict[str, Any]:
        indexes = sorted(set(self.texts) | set(self.reasons) | set(self.tools))
        choices = []
        for i in indexes:
            message: dict[str, Any] = {"role": "assistant", "content": "".join(self.texts.get(i, []))}
            calls = self.tools.get(i)
            if calls:
                message["tool_calls"] = [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for _, c in sorted(calls.items())
                ]
            choices.append({"index": i, "message": message, "finish_reason": self.reasons.get(i)})
        return {"object": "chat.completion", "model": self.name, "choices": choices, "usage": self.usage}

    def broken(self, exc: BaseException, retries: int) -> ModelStreamError:
        text = "".join(self.texts.get(0, []))
        error = ModelStreamError(
            f"{self.model.endpoint.label}: the stream broke off after {len(text)} characters: "
            f"{type(exc).__name__}: {exc}",
            text=text,
            retries=retries,
        )
        self.model._record(self.call, retries=retries, ttft=self.ttft, error=error)
        return error

    def finish(self, retries: int) -> ChatResult:
        if not self.reasons or any(v is None for v in self.reasons.values()):
            raise self.broken(RuntimeError("the stream ended before its last chunk (no finish_reason)"), retries)
        raw = orjson.dumps(self._body())
        return self.model._finish(self.call, raw, retries, ttft=self.ttft)


def _streaming(create: Any) -> Any:
    def send(**kwargs: Any) -> Any:
        return create(stream=True, stream_options={"include_usage": True}, **kwargs)

    return send


def _astreaming(create: Any) -> Any:
    async def send(**kwargs: Any) -> Any:
        return await create(stream=True, stream_options={"include_usage": True}, **kwargs)

    return send


def _vector(value: Any) -> Any:
    """An embedding as sent: a list of floats, or base64 of little-endian
    float32 (what the openai client asks for unless told otherwise)."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    return value


def _store(app: Any) -> Any:
    return None if app is None else app.store


def _openai(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in params.NOT_OPENAI}


def _extra(body: dict[str, Any], settings: dict[str, Any], extra_body: dict[str, Any] | None) -> None:
    extra = {k: v for k, v in settings.items() if k in params.NOT_OPENAI}
    if extra_body:
        extra.update(extra_body)
    if extra:
        body["extra_body"] = extra


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``Retry-After`` (or ``retry-after-ms``), if given."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
        if value is not None:
            return max(0.0, float(value))
    except (TypeError, ValueError):
        return None
    return None


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc.message)


def connect(url: str, **options: Any) -> Model:
    """A client for the model ``url`` names (``openai://MODEL``,
    ``http(s)://HOST/v1#MODEL``, ``ollama://MODEL``); ``options`` are
    :class:`Model`'s (app, api_key, timeout, max_retries, rpm, tpm, cache,
    semantic_cache, defaults, ...). Fails at once on an unknown scheme or a
    missing key."""
    return Model(url, **options)


__all__ = ["AsyncChatStream", "ChatResult", "ChatStream", "Choice", "Model", "ToolCall", "Usage", "connect"]
