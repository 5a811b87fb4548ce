"""Monitors: drift that triggers a safe refit.

A monitor watches a stream of values about a component's flow (by default
the flow's correctness, 1 or 0, as each row of a label relation arrives
for one of its runs) with an online detector (tidal/evals/drift.py). It is
a component of its own, ``evals-monitor-<name>``, with one instance per
watched instance; its state is the detector and a few counters, so it is
versioned like any state, and its update op is triggered by inserts into
the label relation (durable: labels that arrive while nothing runs are
seen later, in order).

When the detector fires, the monitor writes a ``drift_events`` row and
queues the target's refit op (a flow added to the target component). That
op runs the user's refit function on the recent labelled rows that are not
held out, which computes a **candidate** state; the candidate and the
serving state both answer the held-out rows through the flow's serve op
(in shadow: nobody is served by the candidate), and the candidate is
committed as the serving state only if ``promote_if`` holds. Otherwise it
is kept aside in the monitor's state (``candidate``) and the event says
``rejected``. A refit that raises changes nothing but the event
(``failed``). A promotion is an ordinary commit, so the replaced value
stays in the key's history: ``tidal state rollback`` undoes it.

After a drift the new regime has few labels, so the monitor refits again
every ``retrain_every`` labels for ``retrain_for`` labels, each refit
shadow-checked the same way (``trigger="followup"``).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..app import App
from ..component import Component
from ..core.props import Properties
from ..instance import Instance
from ..relations.builtin import Run
from ..relations.record import Record
from . import drift
from .drift import Detector
from .live import sampled
from .records import DriftEvent
from .runner import now

Watch = Callable[[Record], float | None]
PromoteIf = Literal["not worse", "better"] | Callable[[float, float], bool]

STATE = ("detector", "n", "drift_at", "last_refit")
"""The monitor's own state keys, besides ``candidate`` and ``candidate_event``."""


@dataclass(frozen=True)
class Holdout:
    """Which labelled rows judge a candidate: among the ``last`` most
    recent rows of ``relation``, those whose id hashes under ``fraction``
    (the same rows in every process). Held-out rows are never given to the
    refit.

    A row names the run it labels (field ``run``) and the right answer
    (field ``label``); the input is the run's props, unless ``input`` makes
    it from the row."""

    relation: type[Record]
    last: int = 200
    fraction: float = 0.25
    label: str = "label"
    run: str = "run_id"
    input: Callable[[Record], dict[str, Any]] | None = None

    def held(self, row: Record) -> bool:
        return sampled(row.id, self.fraction)

    def split(self, app: App, window: int) -> tuple[list[Record], list[Record]]:
        """The latest ``window`` rows that are not held out (the refit's
        training rows) and the held-out rows among the latest ``last``,
        both oldest first."""
        rows = app.query(self.relation, order_by="-created_at", limit=window + self.last)
        train = [r for r in rows if not self.held(r)][:window]
        held = [r for r in rows[: self.last] if self.held(r)]
        return train[::-1], held[::-1]

    def answer(self, row: Record) -> Any:
        return getattr(row, self.label)

    def props(self, app: App, row: Record) -> dict[str, Any] | None:
        """The flow's input for ``row``: ``input(row)``, or the labelled run's props."""
        if self.input is not None:
            return self.input(row)
        found = logged_run(app, getattr(row, self.run))
        return None if found is None or not isinstance(found.props, dict) else found.props


def holdout(
    relation: type[Record],
    *,
    last: int = 200,
    fraction: float = 0.25,
    label: str = "label",
    run: str = "run_id",
    input: Callable[[Record], dict[str, Any]] | None = None,
) -> Holdout:
    """Held-out recent labelled data for a monitor's shadow check::

    evals.holdout(Labelled, last=200)      # rows with run_id and label fields
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if last < 1:
        raise ValueError(f"last must be at least 1, got {last!r}")
    return Holdout(relation, last, fraction, label, run, input)


def logged_run(app: App, run_id: str | None) -> Run | None:
    """The run ``run_id`` from the runs log (written in batches: this
    process's buffer is flushed when the row is not there yet)."""
    if not run_id:
        return None
    found = app.get(Run, run_id)
    if found is None:
        app.flush_runs()
        found = app.get(Run, run_id)
    return found


class _Candidate(Mapping[str, Any]):
    """The serving state with a refit's changes on top: what the target
    would hold if the candidate were promoted."""

    def __init__(self, changes: Mapping[str, Any], serving: Mapping[str, Any]) -> None:
        self._changes, self._serving = changes, serving

    def __getitem__(self, key: str) -> Any:
        return self._changes[key] if key in self._changes else self._serving[key]

    def __iter__(self) -> Iterator[str]:
        return iter(set(self._changes) | set(self._serving))

    def __len__(self) -> int:
        return len(set(self._changes) | set(self._serving))

    def get(self, key: str, default: Any = None) -> Any:
        return self._changes[key] if key in self._changes else self._serving.get(key, default)


def _promote(rule: PromoteIf, old: float, new: float, tolerance: float) -> bool:
    if callable(rule):
        return bool(rule(old, new))
    if rule == "not worse":
        return new >= old - tolerance
    if rule == "better":
        return new > old + tolerance
    raise ValueError(f"promote_if must be 'not worse', 'better' or a function of (old, new), got {rule!r}")


def _event_id(name: str, instance: str, n: int) -> str:
    return "drift-" + hashlib.sha256(f"{name}\0{instance}\0{n}".encode()).hexdigest()[:24]


@dataclass
class Monitor:
    """A running monitor: ``component`` is its own component (one instance
    per watched instance), ``target`` the watched one, ``flow`` the
    target's flow whose serve op the shadow check calls."""

    name: str
    component: Component
    target: Component
    flow: str
    refit_flow: str
    """The flow added to ``target`` whose update op refits in shadow."""
    shadow: Holdout
    template: Detector
    watch: Watch
    direction: Literal["down", "up", "both"]
    train: int
    retrain_every: int
    retrain_for: int
    promote_if: PromoteIf
    tolerance: float
    metric: Callable[[Any, Any], float]
    refit: Callable[[Mapping[str, Any], Properties], Mapping[str, Any] | None]
    route: str | Callable[[Record], str] = "global"
    """The watched instance: its name, or a function of the label row."""
    _instances: dict[tuple[str, str], Instance] = field(default_factory=dict)

    @property
    def app(self) -> App:
        return self.target.app

    def instance(self, instance: str) -> Instance:
        """The monitor's instance for the target's ``instance``: its state
        holds the detector, the counters and a rejected candidate."""
        return self._open(self.component, instance)

    def _open(self, comp: Component, instance: str) -> Instance:
        key = (comp.name, instance)
        if key not in self._instances:
            self._instances[key] = comp(instance)
        return self._instances[key]

    def events(self, instance: str | None = None) -> list[DriftEvent]:
        """This monitor's drift events, oldest first."""
        where: dict[str, Any] = {"monitor": self.name}
        if instance is not None:
            where["instance"] = instance
        return self.app.query(DriftEvent, where, order_by="detected_at")

    def candidate(self, instance: str) -> Mapping[str, Any] | None:
        """The last candidate state the shadow check rejected, if any."""
        value = self.instance(instance).read_state("candidate")
        return value if isinstance(value, Mapping) else None

    def flush(self, instance: str) -> None:
        """Wait until the labels inserted so far are watched and the refits
        they queued are done (dispatching the relation's changes first)."""
        self.instance(instance).flush_update()
        self._open(self.target, instance).flush_update(self.refit_flow)

    def shadow_score(self, state: Mapping[str, Any], rows: Sequence[tuple[dict[str, Any], Any]]) -> float:
        """The mean ``metric`` of the flow's serve op on ``rows`` of
        (props, right answer), answering from ``state``."""
        serve = self.target.serve_routes[self.flow].fn
        total = 0.0
        for props, answer in rows:
            total += float(self.metric(serve(state, Properties(props)), answer))
        return total / len(rows) if rows else 0.0

    # -- the ops ----------------------------------------------------------

    def observe(self, state: Mapping[str, Any], props: Properties) -> dict[str, Any]:
        """The monitor's update op: one label row in, the detector stepped,
        a refit queued on drift or as a follow-up."""
        row: Record = props["record"]
        value = self.watch(row)
        if value is None:
            return {}
        det: Detector = state["detector"]
        n = state["n"] + 1
        changes: dict[str, Any] = {"detector": det, "n": n}
        fired = det.update(value)
        drift_at, last = state["drift_at"], state["last_refit"]
        cooled = last is None or n - last >= self.retrain_every
        instance = self._route(row)
        if fired and self._worse(det) and cooled:
            changes["drift_at"] = changes["last_refit"] = n
            self._queue(instance, n, "drift", det)
        elif (
            drift_at is not None
            and cooled
            and 0 < n - drift_at <= self.retrain_for
            and (n - drift_at) % self.retrain_every == 0
        ):
            changes["last_refit"] = n
            self._queue(instance, n, "followup", det)
        return changes

    def _worse(self, det: Detector) -> bool:
        if self.direction == "both":
            return True
        before, recent = det.last.get("mean_before"), det.last.get("mean_recent")
        if before is None or recent is None:
            return True
        return bool(recent < before) if self.direction == "down" else bool(recent > before)

    def _route(self, row: Record) -> str:
        return self.route if isinstance(self.route, str) else self.route(row)

    def _queue(self, instance: str, n: int, trigger: str, det: Detector) -> None:
        event_id = _event_id(self.name, instance, n)
        self.app.upsert(
            DriftEvent(
                id=event_id,
                monitor=self.name,
                component=self.target.name,
                instance=instance,
                trigger=trigger,
                detected_at=now(),
                labels_seen=n,
                detector=det.stats(),
            )
        )
        self._open(self.target, instance).run(self.refit_flow, props={"event_id": event_id})

    def refit_op(self, state: Mapping[str, Any], props: Properties) -> dict[str, Any] | None:
        """The target's refit op: a candidate from the user's refit, scored
        in shadow against the serving state, returned (so committed) only
        when it is not worse."""
        app = self.app
        event = app.get(DriftEvent, props["event_id"])
        if event is None:
            return None
        version = self._open(self.target, event.instance).get_version()
        if event.outcome != "pending" and not (event.outcome == "promoted" and event.serving_version == version):
            return None  # done already (a re-run after its commit); a promotion not yet committed is redone
        train, held = self.shadow.split(app, self.train)
        done: dict[str, Any] = {"finished_at": now(), "serving_version": version, "train_n": len(train)}
        try:
            candidate = dict(self.refit(state, Properties({"rows": train, "event": event})) or {})
            if not candidate:
                raise ValueError("the refit returned no state changes")
        except Exception as exc:
            app.upsert(event.model_copy(update={**done, "outcome": "failed", "error": f"{type(exc).__name__}: {exc}"}))
            return None
        examples = [(p, self.shadow.answer(r)) for r in held if (p := self.shadow.props(app, r)) is not None]
        done.update(keys=sorted(candidate), shadow_n=len(examples))
        if not examples:
            self.instance(event.instance).write_state({"candidate": candidate, "candidate_event": event.id})
            app.upsert(event.model_copy(update={**done, "outcome": "rejected", "error": "no held-out labelled rows"}))
            return None
        old = self.shadow_score(state, examples)
        new = self.shadow_score(_Candidate(candidate, state), examples)
        done.update(old_score=old, new_score=new)
        if _promote(self.promote_if, old, new, self.tolerance):
            app.upsert(event.model_copy(update={**done, "outcome": "promoted"}))
            return candidate
        self.instance(event.instance).write_state({"candidate": candidate, "candidate_event": event.id})
        app.upsert(event.model_copy(update={**done, "outcome": "rejected"}))
        return None


def _equal(output: Any, answer: Any) -> float:
    return 1.0 if output == answer else 0.0


def monitor(
    component: Component,
    flow: str,
    *,
    refit: str | Callable[..., Mapping[str, Any] | None],
    shadow: Holdout,
    watch: Literal["accuracy"] | Watch = "accuracy",
    detector: str | Detector = "adwin",
    instance: str | Callable[[Record], str] = "global",
    direction: Literal["down", "up", "both"] | None = None,
    promote_if: PromoteIf = "not worse",
    tolerance: float = 0.0,
    metric: Callable[[Any, Any], float] = _equal,
    train: int = 400,
    retrain_every: int = 50,
    retrain_for: int = 300,
    name: str | None = None,
) -> Monitor:
    """Watch ``component``'s ``flow`` and refit it safely when it drifts::

        @Clf.update("fit")
        def fit(state, props):               # props["rows"]: recent labelled rows
            return {"model": train(props["rows"])}

        evals.monitor(Clf, "predict", refit="fit", watch="accuracy", detector="adwin",
                      shadow=evals.holdout(Labelled, last=200), instance="clf")

    ``watch="accuracy"`` steps the detector with 1 or 0 for each row
    inserted into the holdout's relation: whether the labelled run's result
    equals the row's label (``metric``). Any function of the row is a watch
    too (its number, or None to skip the row): inputs, outputs, feedback.
    ``detector``: ``adwin``, ``page_hinkley``, ``ks`` or a
    :class:`~tidal.evals.drift.Detector`. ``direction`` (default ``down``
    for accuracy, else ``both``) says which moves count as drift.

    ``refit`` is a flow of ``component`` whose update ops compute the new
    state (their changes are merged; the flow can still be run on its own)
    or a function ``(state, props)``; either gets ``props["rows"]``, the
    latest ``train`` labelled rows not held out, and ``props["event"]``.
    The candidate is promoted when ``promote_if`` (``"not worse"``,
    ``"better"`` or a function of the old and new shadow scores) holds.
    ``instance`` names the watched instance (or a function of the label row).
    Events are rows of ``drift_events`` (:class:`~tidal.evals.DriftEvent`)."""
    if flow not in component.serve_routes:
        raise ValueError(f"component {component.name} has no serve op for flow {flow!r}")
    if isinstance(refit, str):
        routes = component.update_routes.get(refit)
        if not routes:
            raise ValueError(
                f"component {component.name} has no update op for refit flow {refit!r}; "
                f"known flows: {component.flow_keys()}"
            )

        def refit_fn(state: Mapping[str, Any], props: Properties) -> Mapping[str, Any] | None:
            changes: dict[str, Any] = {}
            for route in routes:
                changes.update(route.fn(_Candidate(changes, state), props) or {})
            return changes
    else:
        refit_fn = refit
    if retrain_every < 1:
        raise ValueError(f"retrain_every must be at least 1, got {retrain_every!r}")
    app: App = component.app
    label = name or f"{component.name}.{flow}"
    template = drift.detector(detector)
    mon_name = "evals-monitor-" + hashlib.sha256(label.encode()).hexdigest()[:12]
    handle = Monitor(
        name=label,
        component=app.component(mon_name),
        target=component,
        flow=flow,
        refit_flow=f"refit:{label}",
        shadow=shadow,
        template=template,
        watch=_accuracy(app, shadow, metric) if watch == "accuracy" else watch,
        direction=direction or ("down" if watch == "accuracy" else "both"),
        train=train,
        retrain_every=retrain_every,
        retrain_for=retrain_for,
        promote_if=promote_if,
        tolerance=tolerance,
        metric=metric,
        refit=refit_fn,
        route=instance,
    )

    @handle.component.init_state
    def start() -> dict[str, Any]:
        return {"detector": copy.deepcopy(template), "n": 0, "drift_at": None, "last_refit": None}

    handle.component.update(on=shadow.relation, events="insert", instance=instance)(handle.observe)
    component.update(handle.refit_flow)(handle.refit_op)
    return handle


def _accuracy(app: App, shadow: Holdout, metric: Callable[[Any, Any], float]) -> Watch:
    def accuracy(row: Record) -> float | None:
        run = logged_run(app, getattr(row, shadow.run))
        if run is None or run.status != "ok":
            return None
        return float(metric(run.result, shadow.answer(row)))

    return accuracy
