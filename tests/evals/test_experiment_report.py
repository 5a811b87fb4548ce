"""An experiment's report from an AI judge's scores (eval_scores rows whose
target run is a run of the experiment), with scripted stand-in judges."""

from __future__ import annotations

from typing import Any

import tidal
from tidal import evals


def test_report_from_judge_scores(standin: Any, llm: Any, app: tidal.App) -> None:
    standin.script(
        [
            {"match": r"\[Answer to grade\]\nterse", "json": {"score": 2, "reason": "curt"}},
            {"match": r"\[Answer to grade\]\nfriendly", "json": {"score": 5, "reason": "warm"}},
        ]
    )
    comp = app.component("Assistant", params={"style": tidal.Variants(a="terse", b="friendly")})

    @comp.serve("ask")
    def ask(state: Any, props: Any) -> str:
        return f"{comp.params['style']} answer to {props['q']}"

    judge = evals.Judge(llm, rubric="Helpful? 1-5", name="helpful")
    live = evals.online(comp, "ask", sample=1.0, scorers=[judge], every="1h")
    for i in range(12):
        comp(f"u{i}").run("ask", {"q": f"q{i}"})
    app.flush_runs(always=True)
    live.score(app.query(tidal.Run, {"component": "Assistant", "kind": "serve"}))
    report = app.experiment("Assistant.style").report(metric="helpful")
    rows = {v.variant: v for v in report.variants}
    assert rows["a"].n + rows["b"].n == 12 and rows["a"].n > 0 and rows["b"].n > 0
    assert rows["a"].mean == 2.0 and rows["b"].mean == 5.0
    assert report.metric == "helpful"
    # Feedback is another metric: none yet.
    assert "no feedback scores yet" in app.experiment("Assistant.style").report().message
