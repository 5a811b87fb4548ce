"""Guardrails around serve ops: what a guard is, and how the op is run
between them. Pure: a violation is reported to the run's runtime, which
stores it (``guard_violations``).

::

    @Assistant.serve("ask", guard=[guards.pii(action="redact"), guards.max_length(800, action="retry")])
    def ask(state, props): ...

A guard is a :class:`Guard` (a hook class whose checks find nothing by
default: override ``check_input`` and / or ``check_output``, and ``redact``
for ``action="redact"``) or any function ``fn(result) -> str | bool | None``,
an output check that blocks: a string (the violation) or ``False`` is a
violation, ``None`` or ``True`` is fine. Built-ins live in
``tidal.evals.guards`` (schema, pii, max_length, grounded_in, judge).

Guards run in order, inputs before the op, outputs after it. What a
violation does is the guard's ``action``:

- ``block``: raise :class:`~tidal.exceptions.GuardrailError` naming the guard;
- ``redact``: replace what matched (``guard.redact``) and go on;
- ``retry``: run the op again (up to ``retries`` times) with the violation in
  ``props["guard_violation"]``, so that it (a prompt) can take it into
  account; still violating after that blocks. On inputs it blocks;
- ``fallback``: the op's result is ``guard.fallback`` (before: the op is not run).

A guard that raises is a :class:`~tidal.exceptions.GuardrailError` too,
saying which guard raised what; it is logged with action ``error``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Literal

from ..context import current_run
from ..exceptions import DefinitionError, GuardrailError

Action = Literal["block", "redact", "retry", "fallback"]
ACTIONS: tuple[str, ...] = ("block", "redact", "retry", "fallback")

VIOLATION_PROP = "guard_violation"
"""The prop a retried op finds the violation in."""


class Guard:
    """A check around a serve op. Both checks find nothing by default;
    a check returns None when all is well, else the violation (a short text
    saying what is wrong, e.g. ``"an email address"``)."""

    name: str = "guard"

    def __init__(
        self,
        action: Action = "block",
        *,
        fallback: Any = None,
        retries: int = 1,
        name: str | None = None,
    ) -> None:
        if action not in ACTIONS:
            raise DefinitionError(f"guard action must be one of {ACTIONS}, got {action!r}")
        if not isinstance(retries, int) or retries < 0:
            raise DefinitionError(f"guard retries must be an int >= 0, got {retries!r}")
        self.action: Action = action
        self.fallback = fallback
        self.retries = retries
        if name is not None:
            self.name = name

    def check_input(self, props: dict[str, Any]) -> str | None:
        """The violation in the props, if any (before the op runs)."""
        return None

    def check_output(self, result: Any, props: dict[str, Any]) -> str | None:
        """The violation in the op's result, if any."""
        return None

    def redact(self, value: Any) -> Any:
        """``value`` (props or a result) with what violates replaced."""
        return value

    def __repr__(self) -> str:
        return f"<guard {self.name} action={self.action}>"


class FunctionGuard(Guard):
    """A plain function used as a guard: an output check that blocks."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        super().__init__("block", name=getattr(fn, "__name__", repr(fn)))
        self.fn = fn

    def check_output(self, result: Any, props: dict[str, Any]) -> str | None:
        verdict = self.fn(result)
        if verdict is None or verdict is True:
            return None
        if verdict is False:
            return "check failed"
        return str(verdict)


def as_guards(guards: Iterable[Any], where: str) -> tuple[Guard, ...]:
    """``guard=``'s items as Guards; DefinitionError for anything else."""
    out: list[Guard] = []
    for item in guards:
        if isinstance(item, Guard):
            out.append(item)
        elif callable(item):
            out.append(FunctionGuard(item))
        else:
            raise DefinitionError(f"{where}: guard= takes Guards or functions, got {item!r}")
    return tuple(out)


class _Fallback:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _report(guard: Guard, stage: str, action: str, detail: str) -> None:
    run = current_run.get()
    if run is not None:
        run.runtime.record_violation(run, guard.name, stage, action, detail)


def _check(guard: Guard, stage: str, where: str, check: Callable[[], str | None]) -> str | None:
    try:
        return check()
    except GuardrailError:
        raise
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        _report(guard, stage, "error", detail)
        raise GuardrailError(
            f"guard {guard.name!r} raised {detail} while checking the {stage} of {where}; "
            "fix the guard (a check returns None or the violation, it does not raise)",
            guard.name,
            stage,
            detail,
        ) from exc


def _block(guard: Guard, stage: str, where: str, detail: str, action: str = "block") -> GuardrailError:
    _report(guard, stage, action, detail)
    return GuardrailError(f"guard {guard.name!r} blocked the {stage} of {where}: {detail}", guard.name, stage, detail)


def before(guards: tuple[Guard, ...], props: dict[str, Any], where: str) -> _Fallback | None:
    """Check the props with every guard (redacting them in place where a
    guard says so); a fallback to return instead of running the op, or None."""
    for guard in guards:
        detail = _check(guard, "input", where, lambda g=guard: g.check_input(props))  # type: ignore[misc]
        if detail is None:
            continue
        if guard.action == "redact":
            _report(guard, "input", "redact", detail)
            redacted = guard.redact(dict(props))
            props.clear()
            props.update(redacted)
        elif guard.action == "fallback":
            _report(guard, "input", "fallback", detail)
            return _Fallback(guard.fallback)
        else:
            raise _block(guard, "input", where, detail)
    return None


def after(guards: tuple[Guard, ...], result: Any, props: dict[str, Any], where: str, tries: int) -> tuple[Any, bool]:
    """Check the result with every guard: (the result, possibly redacted or
    replaced, False), or (None, True) when the op should run again (the
    violation is then in ``props["guard_violation"]``)."""
    for guard in guards:
        detail = _check(guard, "output", where, lambda g=guard, r=result: g.check_output(r, props))  # type: ignore[misc]
        if detail is None:
            continue
        if guard.action == "redact":
            _report(guard, "output", "redact", detail)
            result = guard.redact(result)
        elif guard.action == "fallback":
            _report(guard, "output", "fallback", detail)
            return guard.fallback, False
        elif guard.action == "retry" and tries < guard.retries:
            _report(guard, "output", "retry", detail)
            props[VIOLATION_PROP] = f"{guard.name}: {detail}"
            return None, True
        else:
            raise _block(guard, "output", where, detail)
    return result, False


def guarded(fn: Callable[..., Any], guards: tuple[Guard, ...], kind: str, where: str) -> Callable[..., Any]:
    """``fn`` (a plain or async serve op) run between ``guards``."""
    if kind == "async":

        @functools.wraps(fn)
        async def run_async(state: Any, props: dict[str, Any]) -> Any:
            early = before(guards, props, where)
            if early is not None:
                return early.value
            tries = 0
            while True:
                result, again = after(guards, await fn(state, props), props, where, tries)
                if not again:
                    return result
                tries += 1

        return run_async

    @functools.wraps(fn)
    def run_sync(state: Any, props: dict[str, Any]) -> Any:
        early = before(guards, props, where)
        if early is not None:
            return early.value
        tries = 0
        while True:
            result, again = after(guards, fn(state, props), props, where, tries)
            if not again:
                return result
            tries += 1

    return run_sync
