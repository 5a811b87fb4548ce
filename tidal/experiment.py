"""Experiments: a component param given as :class:`tidal.Variants`, read
back from the runs log. ``app.experiment("Assistant.style")`` is the handle::

    exp = app.experiment("Assistant.style")
    exp.variant("user-42")                  # 'b': the instance's variant
    print(exp.report())                     # per variant: runs, n, mean, interval
    exp.report(metric="helpfulness")        # a scorer's (a judge's) scores instead of feedback
    exp.promote("b")                        # every instance gets 'b' from now on (persisted)

Every run of the component records its instance's variants (``runs.variants``),
so the report needs only the app's relations: feedback scores (``feedback``)
or eval scores (``eval_scores``, e.g. written by ``evals.online``) joined to
the runs they are about.

The intervals are confidence sequences: they hold at every sample size at
once, so the report may be looked at after every run and stopped whenever one
variant is clearly ahead, without the inflated error of re-checking a fixed-n
interval (peeking). They are the asymptotic Gaussian-mixture confidence
sequences of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas ("Time-uniform
central limit theory and asymptotic confidence sequences", Annals of
Statistics 2024), with the variant's sample standard deviation, tuned to be
tightest near ``tuned_for`` samples; ``alpha`` is split evenly between the
variants (Bonferroni), so that all the intervals hold together. No scipy:
the boundary is closed-form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from . import relations
from .core.variants import Variants
from .engine.variants import experiment_name
from .exceptions import DefinitionError, NotFoundError

if TYPE_CHECKING:
    from .engine.runtime import Runtime

METHOD = "asymptotic confidence sequence (Gaussian mixture; Waudby-Smith et al. 2024), Bonferroni across variants"


def boundary(n: int, sd: float, alpha: float, tuned_for: int = 100) -> float:
    """Half-width of the confidence sequence for a mean after ``n`` samples
    with standard deviation ``sd``: valid at every ``n`` simultaneously with
    probability ``1 - alpha`` (asymptotically)."""
    if n < 2:
        return math.inf
    log_term = -2.0 * math.log(alpha)
    rho2 = (log_term + math.log(log_term + 1.0)) / tuned_for
    return sd * math.sqrt(2.0 * (n * rho2 + 1.0) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1.0) / alpha))


@dataclass(frozen=True)
class VariantResult:
    """One variant's line of an experiment report."""

    variant: str
    value: Any
    """The param's value in this variant (None when the definition is not loaded)."""
    weight: float | None
    runs: int
    """Serve runs of instances in this variant."""
    n: int
    """Scores (feedback or a scorer's) of those runs."""
    mean: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class ExperimentReport:
    """Per variant runs, n, mean score and an always-valid interval."""

    experiment: str
    metric: str
    alpha: float
    method: str
    variants: list[VariantResult]
    promoted: str | None
    leader: str | None
    """The variant whose interval lies wholly above every other's, if any."""
    message: str
    """What the numbers say, or why there are none."""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for row in out["variants"]:
            for key in ("mean", "low", "high"):
                if row[key] is not None and not math.isfinite(row[key]):
                    row[key] = None
            try:
                orjson.dumps(row["value"])
            except TypeError:
                row["value"] = repr(row["value"])
        return out

    def __str__(self) -> str:
        lines = [f"experiment {self.experiment}, metric {self.metric} ({self.method}, alpha {self.alpha})"]
        lines.append(f"{'variant':<12} {'runs':>7} {'n':>6} {'mean':>9} {'interval':>23}")
        for v in self.variants:
            mean = "-" if v.mean is None else f"{v.mean:.4f}"
            if v.low is None or v.high is None or not math.isfinite(v.low):
                interval = "-"
            else:
                interval = f"[{v.low:.4f}, {v.high:.4f}]"
            lines.append(f"{v.variant:<12} {v.runs:>7} {v.n:>6} {mean:>9} {interval:>23}")
        lines.append(self.message)
        lines.extend(self.notes)
        return "\n".join(lines)


class Experiment:
    """A Variants param of a component, as an experiment (see the module)."""

    def __init__(self, runtime: Runtime[Any], name: str) -> None:
        component, sep, param = name.rpartition(".")
        if not sep or not component or not param:
            raise DefinitionError(f"an experiment is named Component.param, e.g. 'Assistant.style'; got {name!r}")
        self.runtime = runtime
        self.name = name
        self.component = component
        self.param = param
        spec = runtime.components.get(component)
        definition = spec.params.get(param) if spec is not None else None
        if spec is not None and not isinstance(dict.get(spec.params, param), Variants):
            known = [experiment_name(component, p) for p in spec.variant_params]
            raise NotFoundError("experiment", name, known, where=f"component {component} (no Variants param {param!r})")
        self.definition: Variants | None = definition if isinstance(definition, Variants) else None
        """The Variants (None when this process has not loaded the component:
        the report then reads the variants from the runs alone)."""

    def variant(self, instance: str) -> str:
        """The variant ``instance`` gets (promotion included)."""
        if self.definition is None:
            raise NotFoundError("component", self.component, [], where="this process (load the app's code)")
        return self.runtime.variant_of(self.component, self.param, self.definition, instance)

    @property
    def promoted(self) -> str | None:
        """The variant every instance gets since ``promote``, if any."""
        self.runtime.variant_resolver.reload()
        return self.runtime.variant_resolver.pins().get(self.name)

    def promote(self, variant: str) -> None:
        """Give every instance ``variant`` from now on (persisted in
        ``experiment_pins``; other processes follow within
        ``PINS_REFRESH_S``). Runs go on recording the variant they used."""
        if self.definition is not None and variant not in self.definition.values:
            raise DefinitionError(
                f"experiment {self.name} has no variant {variant!r}; its variants: {self.definition.names}"
            )
        pin = self.runtime.db.validate([relations.ExperimentPin(id=self.name, variant=variant)])
        self.runtime.db.insert_many(pin, upsert=True)
        self.runtime.variant_resolver.reload()

    def unpromote(self) -> None:
        """Undo ``promote``: instances get their own variant again."""
        if self.runtime.db.get(relations.ExperimentPin, self.name) is not None:
            self.runtime.db.delete_many(relations.ExperimentPin, [self.name])
        self.runtime.variant_resolver.reload()

    # -- the report ----------------------------------------------------------

    def _variant(self, raw: Any) -> str | None:
        if raw is None:
            return None
        if isinstance(raw, str | bytes):
            raw = orjson.loads(raw)
        found = raw.get(self.param) if isinstance(raw, dict) else None
        return found if isinstance(found, str) else None

    def _rows(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        self.runtime.flush_runs()
        for cls in (relations.Run, relations.Feedback):
            self.runtime.db.relation(cls)
        return self.runtime.db.sql(query, params).tuples()

    def _scores(self, metric: str) -> list[tuple[str, float]]:
        if metric == "feedback":
            query = (
                "SELECT r.variants, f.score FROM feedback f JOIN runs r ON r.id = f.run_id "
                "WHERE r.component = :c AND r.variants IS NOT NULL AND f.score IS NOT NULL"
            )
        else:
            if not self.runtime.db.has_table("eval_scores"):
                return []
            query = (
                "SELECT r.variants, s.score FROM eval_scores s JOIN runs r ON r.id = s.target_run_id "
                "WHERE r.component = :c AND r.variants IS NOT NULL AND s.scorer = :m AND s.score IS NOT NULL"
            )
        out = []
        for raw, score in self._rows(query, {"c": self.component, "m": metric}):
            variant = self._variant(raw)
            if variant is not None:
                out.append((variant, float(score)))
        return out

    def report(self, metric: str = "feedback", *, alpha: float = 0.05, tuned_for: int = 100) -> ExperimentReport:
        """Per variant: serve runs, n scores, mean and a ``1 - alpha``
        confidence sequence, from feedback scores (``metric="feedback"``) or
        from the scores of the scorer (a judge) named ``metric``."""
        if not 0 < alpha < 1:
            raise DefinitionError(f"alpha must be between 0 and 1, got {alpha!r}")
        runs: dict[str, int] = {}
        query = (
            "SELECT variants, COUNT(*) FROM runs "
            "WHERE component = :c AND kind = 'serve' AND variants IS NOT NULL GROUP BY variants"
        )
        for raw, count in self._rows(query, {"c": self.component}):
            variant = self._variant(raw)
            if variant is not None:
                runs[variant] = runs.get(variant, 0) + int(count)
        scores: dict[str, list[float]] = {}
        for variant, score in self._scores(metric):
            scores.setdefault(variant, []).append(score)
        names = list(self.definition.names) if self.definition is not None else []
        names += sorted((set(runs) | set(scores)) - set(names))
        per_alpha = alpha / max(len(names), 1)
        results = []
        for name in names:
            values = scores.get(name, [])
            n = len(values)
            mean = sum(values) / n if n else None
            low = high = None
            if mean is not None and n >= 2:
                sd = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))
                half = boundary(n, sd, per_alpha, tuned_for)
                low, high = mean - half, mean + half
            results.append(
                VariantResult(
                    name,
                    self.definition.values.get(name) if self.definition is not None else None,
                    self.definition.weights.get(name) if self.definition is not None else None,
                    runs.get(name, 0),
                    n,
                    mean,
                    low,
                    high,
                )
            )
        promoted = self.promoted
        leader = _leader(results)
        message = self._message(metric, results, leader)
        notes = [f"promoted: every instance gets {promoted!r}"] if promoted else []
        return ExperimentReport(self.name, metric, alpha, METHOD, results, promoted, leader, message, notes)

    def _message(self, metric: str, results: list[VariantResult], leader: str | None) -> str:
        source = "feedback scores" if metric == "feedback" else f"scores of scorer {metric!r}"
        how = (
            "give feedback with app.feedback(run_id, score=...)"
            if metric == "feedback"
            else f"score the runs (e.g. evals.online(..., scorers=[...]) with a scorer named {metric!r})"
        )
        if self.definition is not None and len(self.definition.values) == 1:
            return (
                f"experiment {self.name} has one variant ({self.definition.names[0]!r}): there is nothing to "
                "compare; give Variants a second one"
            )
        if not results or (all(r.runs == 0 for r in results) and all(r.n == 0 for r in results)):
            return f"experiment {self.name} has no runs yet: nothing to report"
        if all(r.n == 0 for r in results):
            return f"experiment {self.name} has runs but no {source} yet: {how}"
        seen = [r.variant for r in results if r.n > 0]
        if len(seen) == 1:
            return f"only variant {seen[0]!r} of {self.name} has {source} so far: nothing to compare it with yet"
        if leader is not None:
            return f"variant {leader!r} leads: its interval lies above every other's (safe to stop and promote)"
        return "no variant is ahead yet: the intervals overlap (keep collecting; looking again is safe)"


def _leader(results: Iterable[VariantResult]) -> str | None:
    rows = [r for r in results if r.low is not None and r.high is not None and math.isfinite(r.low)]
    if len(rows) < 2:
        return None
    best = max(rows, key=lambda r: r.low or 0.0)
    assert best.low is not None
    if all(best.low > (r.high or 0.0) for r in rows if r is not best):
        return best.variant
    return None
