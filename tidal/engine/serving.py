"""The serve path: cache lookup, calling a serve op of any kind, caching.

Kept apart from :mod:`tidal.instance` because it is the hot path: every
line here runs on every ``run`` call.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from ..codec import props_key
from ..context import CurrentRun, current_run
from ..core.component import ComponentSpec, ServeRoute
from ..core.props import Properties
from ..core.state import Snapshot
from .cache import CacheKey

if TYPE_CHECKING:
    from .runtime import Runtime

_NO_CACHE = None


def cache_key(
    component: ComponentSpec, instance: str, route: ServeRoute, props: Properties, snap: Snapshot
) -> CacheKey | None:
    """Where this call's result is cached; None when it is not cacheable."""
    pk = props_key(props)
    if pk is None:
        return None
    mode = route.cache or component.cache_mode
    return (component.name, instance, route.key, pk, snap.version if mode == "version" else -1)


def lookup(app: Runtime, component: ComponentSpec, key: CacheKey, props: Properties) -> tuple[bool, Any]:
    """(hit, result); on a hit ``props`` gets what the serve op added to it."""
    hit = app.cache.get(key)
    if hit is None and app.shared_cache:
        raw = app.store.cache_get(_shared_key(key))
        if raw is not None:
            result, saved = app.codec.loads(raw, what="cached result")
            hit = (result, saved)
            app.cache.set(key, result, saved, component.cache_ttl)
    if hit is None:
        return False, None
    if len(hit[1]) != len(props):
        props.update(hit[1])
    return True, hit[0]


def remember(app: Runtime, component: ComponentSpec, key: CacheKey, props: Properties, result: Any) -> None:
    """Cache ``result`` (and what the serve op added to ``props``) under ``key``."""
    ttl = component.cache_ttl
    saved = dict(props)
    # orjson hands back its props key in a ~4 KB buffer: a kept key is copied
    # to its own size (10,000 cached results would otherwise hold ~40 MB of keys).
    key = (key[0], key[1], key[2], bytes(memoryview(key[3])), key[4])
    app.cache.set(key, result, saved, ttl)
    if app.shared_cache:
        try:
            raw = app.codec.dumps((result, saved), what="serve result")
        except Exception:  # an unpicklable result is still cached locally
            return
        app.store.cache_set(_shared_key(key), raw, ttl)


def _shared_key(key: CacheKey) -> bytes:
    component, instance, flow, pk, version = key
    return b"\x00".join((component.encode(), instance.encode(), flow.encode(), str(version).encode(), pk))


def call_sync(route: ServeRoute, state: Snapshot, props: Properties) -> Any:
    """Run a serve op to completion from synchronous code."""
    kind = route.kind
    if kind == "sync":
        return route.fn(state, props)
    if kind == "gen":
        return list(route.fn(state, props))
    coro = route.fn(state, props) if kind == "async" else _collect(route.fn(state, props))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise TypeError(
        f"serve op of flow {route.key!r} is async and an event loop is running in this thread; "
        "use `await instance.arun(...)` (or `instance.agen(...)`) instead"
    )


async def call_async(route: ServeRoute, state: Snapshot, props: Properties) -> Any:
    """Run a serve op to completion from async code."""
    kind = route.kind
    if kind == "async":
        return await route.fn(state, props)
    if kind == "agen":
        return await _collect(route.fn(state, props))
    if kind == "gen":
        return list(route.fn(state, props))
    return route.fn(state, props)


def within(run: CurrentRun, items: Iterator[Any]) -> Iterator[Any]:
    """``items`` with each step of the iterator run as part of ``run``: the
    context is set around each ``next`` only, so the consumer's code between
    items never sees it, and an abandoned generator leaves nothing set."""
    while True:
        token = current_run.set(run)
        try:
            item = next(items)
        except StopIteration:
            return
        finally:
            current_run.reset(token)
        yield item


async def awithin(run: CurrentRun, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Async twin of :func:`within`."""
    while True:
        token = current_run.set(run)
        try:
            item = await anext(items)
        except StopAsyncIteration:
            return
        finally:
            current_run.reset(token)
        yield item


async def _collect(agen: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in agen]


def iterate(route: ServeRoute, state: Snapshot, props: Properties, sink: list[Any]) -> Iterator[Any]:
    """Yield a generator serve op's items, appending each to ``sink``."""
    for item in route.fn(state, props):
        sink.append(item)
        yield item


async def aiterate(route: ServeRoute, state: Snapshot, props: Properties, sink: list[Any]) -> AsyncIterator[Any]:
    """Async twin of :func:`iterate` for async generator (or any) serve ops."""
    if route.kind == "agen":
        async for item in route.fn(state, props):
            sink.append(item)
            yield item
    elif route.kind == "gen":
        for item in route.fn(state, props):
            sink.append(item)
            yield item
    else:
        result = route.fn(state, props)
        if inspect.isawaitable(result):
            result = await result
        sink.append(result)
        yield result
