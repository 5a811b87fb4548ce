"""``evals.run``: a dataset through a target, each output through the
scorers, every score a row of ``eval_scores``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.progress import Progress

from ..app import App
from ..component import FlowRef
from ..engine.runlog import jsonable
from ..instance import Instance
from .datasets import Dataset
from .records import EvalRun, EvalScore
from .report import Report
from .scorers import Score, Scorer, as_scorer

DEFAULT_INSTANCE = "evals"
"""The instance a flow target runs on when its FlowRef names none."""

Target = FlowRef | Callable[[Any], Any]


def now() -> datetime:
    return datetime.now(UTC)


class Caller:
    """A target made callable: ``call(input) -> (output, run id or None)``.
    A flow (``Comp.flow("ask", instance=...)``) runs with the input as its
    props, and its run id is kept; a function is called with the input."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._instance: Instance | None = None
        self._lock = threading.Lock()
        if isinstance(target, FlowRef):
            self.name = f"{target.component.name}.{target.flow}"
        elif callable(target):
            self.name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
        else:
            raise TypeError(f"a target is a flow (Comp.flow('ask', instance=...)) or a function, got {target!r}")

    def instance(self) -> Instance:
        assert isinstance(self.target, FlowRef)
        with self._lock:
            if self._instance is None:
                self._instance = self.target.component(self.target.instance or DEFAULT_INSTANCE)
            return self._instance

    def __call__(self, input: Any) -> tuple[Any, str | None]:
        if isinstance(self.target, FlowRef):
            if not isinstance(input, dict):
                raise TypeError(f"a flow's input is its props, a dict; got {type(input).__name__}")
            inst = self.instance()
            output = inst.run(self.target.flow, props=input)
            return output, inst.last_run_id
        return self.target(input), None


def score_rows(
    eval_run_id: str,
    example_id: str,
    scorers: Sequence[Scorer],
    input: Any,
    output: Any,
    reference: Any,
    *,
    target_run_id: str | None = None,
    failure: str | None = None,
) -> list[EvalScore]:
    """One row per scorer for one output; a scorer that raises, or a target
    that failed (``failure``), gives a row with the error and no score."""
    rows = []
    stored = jsonable(output)
    for scorer in scorers:
        if failure is not None:
            result = Score.failed(f"the target failed: {failure}")
        else:
            try:
                result = scorer(input, output, reference)
            except Exception as exc:
                result = Score.failed(f"the scorer raised {type(exc).__name__}: {exc}")
        rows.append(
            EvalScore(
                eval_run_id=eval_run_id,
                example_id=example_id,
                scorer=scorer.name,
                judge_model=scorer.model,
                prompt_version=scorer.prompt_version,
                target_run_id=target_run_id,
                score=result.score,
                label=result.label,
                reason=result.reason,
                error=result.error,
                output=stored,
            )
        )
    return rows


@dataclass
class Task:
    example_id: str
    input: Any
    reference: Any


def scorers_of(scorers: Iterable[Scorer | Callable[..., Any]]) -> list[Scorer]:
    found = [as_scorer(s) for s in scorers]
    names = [s.name for s in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two scorers are named {', '.join(twice)}: give one a name= of its own")
    return found


def execute(
    app: App,
    run: EvalRun,
    tasks: Sequence[Task],
    call: Callable[[Any], tuple[Any, str | None]],
    scorers: Sequence[Scorer],
    *,
    concurrency: int,
    progress: bool,
) -> Report:
    """Run ``tasks`` through ``call`` and ``scorers`` on ``concurrency``
    threads; store the rows and the finished run; the report."""

    def one(task: Task) -> list[EvalScore]:
        try:
            output, run_id = call(task.input)
        except Exception as exc:
            return score_rows(
                run.id,
                task.example_id,
                scorers,
                task.input,
                None,
                task.reference,
                failure=f"{type(exc).__name__}: {exc}",
            )
        return score_rows(run.id, task.example_id, scorers, task.input, output, task.reference, target_run_id=run_id)

    rows: list[EvalScore] = []
    with (
        Progress(transient=True, disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tidal-evals") as pool,
    ):
        job = bar.add_task(f"{run.name}: {run.target}", total=len(tasks))
        for done in as_completed([pool.submit(one, t) for t in tasks]):
            rows.extend(done.result())
            bar.advance(job)
    if rows:
        app.insert_many(rows)
    app.flush_runs()  # the target's runs, queryable next to their scores
    report = Report(run.model_copy(update={"finished_at": now()}), rows)
    report.run = app.upsert(report.run.model_copy(update={"summary": report.as_dict()["scorers"]}))
    return report


def run(
    dataset: Dataset,
    target: Target,
    scorers: Iterable[Scorer | Callable[..., Any]],
    *,
    concurrency: int = 4,
    name: str | None = None,
    progress: bool = True,
) -> Report:
    """Run every example of ``dataset`` through ``target`` and score each
    output with each scorer::

        report = evals.run(qa, Assistant.flow("ask", instance="eval"), [evals.exact_match, judge])
        print(report.scorers["judge"].mean)

    ``target`` is a flow (its input is the props; its run id lands in each
    score row) or any function of the input. Examples run on
    ``concurrency`` threads with a progress bar; deterministic model calls
    (temperature 0) are answered from the models' cache when repeated.
    The run is a row of ``eval_runs`` (``name``, default ``dataset:target``;
    the dataset's version), each score a row of ``eval_scores``."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    caller = Caller(target)
    found = scorers_of(scorers)
    record = EvalRun(
        name=name or f"{dataset.name}:{caller.name}",
        kind="offline",
        dataset=dataset.name,
        dataset_version=dataset.version,
        target=caller.name,
        scorers=[s.name for s in found],
        started_at=now(),
    )
    app = dataset.app
    record = app.insert(record)
    tasks = [Task(e.id, e.input, e.reference) for e in dataset.examples]
    return execute(app, record, tasks, caller, found, concurrency=concurrency, progress=progress)
