"""Evaluation: datasets, scorers, AI judges, eval runs and reports,
pairwise leaderboards, online scoring of production runs, replay, and
monitors whose drift triggers a shadow-checked refit.

::

    from tidal import evals, models

    llm = models.connect(url, app=app)
    qa = evals.dataset(app, "qa", [{"input": {"question": "2+2?"}, "reference": "4"}])
    judge = evals.Judge(llm, rubric="Correct and grounded in the sources? 1-5")
    report = evals.run(qa, Assistant.flow("ask", instance="eval"), [evals.exact_match, judge])
    print(report.table()); evals.compare(before, report)
    evals.vote(app, "style", "terse", "friendly", winner="friendly")
    evals.leaderboard(app, "style")                 # Bradley-Terry with bootstrap intervals
    evals.online(Assistant, flow="ask", sample=0.05, scorers=[judge])
    evals.replay(app, Assistant, "ask", variant=other, judge=evals.Pairwise(llm))
    evals.monitor(Clf, "predict", refit="fit", shadow=evals.holdout(Labelled, last=200))

Every score is a row of ``eval_scores`` naming its eval run, example,
scorer, judge model, prompt version and the run that produced the output.
See docs/evals.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .. import lazy

if TYPE_CHECKING:
    from .datasets import Dataset, dataset
    from .drift import Adwin, Detector, KSWindows, PageHinkley
    from .judges import Judge, PairVerdict, Pairwise
    from .live import Online, online
    from .monitors import Holdout, Monitor, holdout, monitor
    from .ranking import Leaderboard, Standing, judge_vote, leaderboard, vote
    from .records import DriftEvent, EvalRun, EvalScore, EvalVote, Example
    from .replays import replay
    from .report import Comparison, EvalNotFoundError, PairedDifference, Report, ScorerSummary, compare
    from .runner import run
    from .scorers import Score, Scorer, embedding_similarity, exact_match, numeric, regex

# Loaded on first use of a name (scipy, evalica, pandas and the model client
# are heavy), so the CLI can hold the package: as tidal.models does.
_MODULES = {
    "Dataset": ".datasets",
    "dataset": ".datasets",
    "Judge": ".judges",
    "Pairwise": ".judges",
    "PairVerdict": ".judges",
    "Leaderboard": ".ranking",
    "Standing": ".ranking",
    "judge_vote": ".ranking",
    "leaderboard": ".ranking",
    "vote": ".ranking",
    "Adwin": ".drift",
    "Detector": ".drift",
    "KSWindows": ".drift",
    "PageHinkley": ".drift",
    "Holdout": ".monitors",
    "Monitor": ".monitors",
    "holdout": ".monitors",
    "monitor": ".monitors",
    "DriftEvent": ".records",
    "Online": ".live",
    "online": ".live",
    "EvalRun": ".records",
    "EvalScore": ".records",
    "EvalVote": ".records",
    "Example": ".records",
    "replay": ".replays",
    "Comparison": ".report",
    "EvalNotFoundError": ".report",
    "PairedDifference": ".report",
    "Report": ".report",
    "ScorerSummary": ".report",
    "compare": ".report",
    "run": ".runner",
    "Score": ".scorers",
    "Scorer": ".scorers",
    "embedding_similarity": ".scorers",
    "exact_match": ".scorers",
    "numeric": ".scorers",
    "regex": ".scorers",
}


_names = lazy.attributes(__name__, _MODULES, globals())


def __getattr__(name: str) -> object:
    if name == "guards":  # the built-in guardrails: a module of their own
        return importlib.import_module(".guards", __name__)
    return _names(name)


__all__ = [
    # Datasets
    "Dataset",
    "Example",
    "dataset",
    # Scorers and judges
    "Judge",
    "PairVerdict",
    "Pairwise",
    "Score",
    "Scorer",
    "embedding_similarity",
    "exact_match",
    "numeric",
    "regex",
    # Runs and reports
    "Comparison",
    "PairedDifference",
    "Report",
    "ScorerSummary",
    "compare",
    "run",
    # Leaderboards
    "Leaderboard",
    "Standing",
    "judge_vote",
    "leaderboard",
    "vote",
    # Production traffic
    "Online",
    "online",
    "replay",
    # Drift and safe refits
    "Adwin",
    "Detector",
    "Holdout",
    "KSWindows",
    "Monitor",
    "PageHinkley",
    "holdout",
    "monitor",
    # Relations and errors
    "DriftEvent",
    "EvalNotFoundError",
    "EvalRun",
    "EvalScore",
    "EvalVote",
]
