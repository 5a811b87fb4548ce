"""evals.run over datasets: flows and functions as targets, every score a
row, reports, comparisons with paired intervals, and the CLI."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from click.testing import CliRunner

import tidal
from tidal import evals
from tidal.cli import main
from tidal.relations.builtin import Run

from .conftest import assistant

CAPITALS = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo"}
ROWS = [{"input": {"question": f"Capital of {c}?"}, "reference": city, "tags": ["geo"]} for c, city in CAPITALS.items()]
KNOWN = {"Capital of France?": "Paris", "Capital of Italy?": "Rome", "Capital of Spain?": "Lisbon"}


def test_datasets_are_relations_versioned_by_their_rows(app: tidal.App) -> None:
    qa = evals.dataset(app, "qa", ROWS)
    assert len(qa) == 4 and qa.version
    assert [e.dataset for e in app.query(evals.Example)] == ["qa"] * 4
    again = evals.dataset(app, "qa", list(reversed(ROWS)))  # same rows: same ids, same version
    assert again.version == qa.version and len(app.query(evals.Example)) == 4
    assert evals.dataset(app, "qa").version == qa.version
    changed = evals.dataset(app, "qa", [*ROWS[:3], {"input": {"question": "Capital of Peru?"}, "reference": "Lima"}])
    assert changed.version != qa.version
    assert len(app.query(evals.Example, {"dataset": "qa"})) == 4  # the replaced row is gone
    assert len(evals.dataset(app, "qa").tagged("geo")) == 3
    with pytest.raises(ValueError, match="input"):
        evals.dataset(app, "bad", [{"question": "no input key"}])


class Faq(tidal.Record):
    q: str
    a: str


def test_a_dataset_of_any_relation(app: tidal.App) -> None:
    app.insert_many([Faq(q="2+2?", a="4"), Faq(q="3+3?", a="6")])
    faq = evals.dataset(app, "faq", app.query(Faq), input=lambda f: f.q, reference=lambda f: f.a)
    report = evals.run(faq, lambda q: str(eval(q[:-1])), [evals.exact_match], progress=False)
    assert report.scorers["exact_match"].mean == 1.0
    assert {r.example_id for r in report.rows} == {f.id for f in app.query(Faq)}


def test_run_over_a_flow_records_scores_and_target_runs(app: tidal.App) -> None:
    Assistant = assistant(app, KNOWN)
    qa = evals.dataset(app, "qa", ROWS)
    report = evals.run(
        qa,
        Assistant.flow("ask", instance="eval"),
        [evals.exact_match, evals.regex("^[A-Z][a-z]+$")],
        concurrency=3,
        name="capitals",
        progress=False,
    )
    summary = report.scorers["exact_match"]
    assert (summary.n, summary.mean, summary.errors) == (4, 0.5, 0)
    assert summary.interval.low is not None and summary.interval.low < 0.5 < (summary.interval.high or 0)
    assert report.scorers["regex(^[A-Z][a-z]+$)"].mean == 0.75  # "I don't know" fails it

    rows = app.query(evals.EvalScore, {"eval_run_id": report.id})
    assert len(rows) == 8
    runs = {r.id: r for r in app.query(Run, {"component": "Assistant", "flow": "ask", "kind": "serve"})}
    assert {r.target_run_id for r in rows} == set(runs)
    for row in rows:
        assert runs[row.target_run_id or ""].result == row.output
    stored = app.get(evals.EvalRun, report.id)
    assert stored is not None
    assert (stored.name, stored.dataset, stored.dataset_version) == ("capitals", "qa", qa.version)
    assert stored.target == "Assistant.ask" and stored.finished_at is not None
    assert stored.summary["exact_match"]["mean"] == 0.5
    Assistant("eval").flush_update("ask")
    assert Assistant("eval").read_state("asked") == 4

    data = json.loads(report.to_json())
    assert data["scorers"]["exact_match"]["n"] == 4 and data["dataset_version"] == qa.version
    assert evals.Report.load(app, "capitals").as_dict() == report.as_dict()
    assert "exact_match" in str(report.table().columns[0]._cells)


def test_judge_garbage_becomes_error_rows(app: tidal.App, standin: Any, llm: Any) -> None:
    standin.script(
        [
            {"match": "Rome|does not fit", "answer": "no idea, sorry"},
            {"match": r"\[Answer to grade\]", "json": {"score": 4, "reason": "fine"}},
        ]
    )
    qa = evals.dataset(app, "qa", ROWS[:2])
    report = evals.run(qa, lambda i: CAPITALS[i["question"][11:-1]], [evals.Judge(llm, "Right? 1-5")], progress=False)
    judge = report.scorers["judge"]
    assert (judge.n, judge.mean, judge.errors) == (1, 4.0, 1)
    failed = [r for r in report.rows if r.score is None]
    assert len(failed) == 1 and failed[0].output == "Rome" and "StructuredOutputError" in (failed[0].error or "")
    assert failed[0].judge_model == "stand-in" and failed[0].prompt_version == judge.prompt_version


def test_a_target_that_raises_is_an_error_per_scorer(app: tidal.App) -> None:
    def flaky(input: Any) -> str:
        if "Italy" in input["question"]:
            raise RuntimeError("model down")
        return "Paris"

    report = evals.run(evals.dataset(app, "qa", ROWS), flaky, [evals.exact_match, evals.regex("P")], progress=False)
    assert report.scorers["exact_match"].errors == 1 and report.scorers["regex(P)"].errors == 1
    assert any("model down" in (r.error or "") for r in report.rows)


def test_runs_use_threads(app: tidal.App) -> None:
    seen: set[str] = set()
    barrier = threading.Barrier(3, timeout=5)

    def slow(input: Any) -> str:
        seen.add(threading.current_thread().name)
        barrier.wait()  # three examples in flight at once, or this times out
        return "x"

    evals.run(evals.dataset(app, "qa", ROWS[:3]), slow, [evals.regex("x")], concurrency=3, progress=False)
    assert len(seen) == 3


def test_compare_pairs_examples(app: tidal.App) -> None:
    def value(input: Any, output: Any, reference: Any) -> float:
        return float(output)

    data = evals.dataset(app, "hard", [{"input": {"n": i}} for i in range(40)])
    # The examples differ far more (0..39) than b improves on a (1 +- 0.1):
    # separate intervals overlap, the paired one is tight and above 0.
    report_a = evals.run(data, lambda x: x["n"], [value], progress=False)
    report_b = evals.run(data, lambda x: x["n"] + 1 + (x["n"] % 3 - 1) / 10, [value], progress=False)
    a, b = report_a.scorers["value"].interval, report_b.scorers["value"].interval
    assert a.high is not None and b.low is not None and b.low < a.high  # unpaired: overlapping

    diff = evals.compare(report_a, report_b).scorers["value"]
    assert diff.n == 40
    assert (diff.mean_a, diff.mean_b) == pytest.approx((a.mean, b.mean))
    assert diff.diff.mean == pytest.approx(1.0, abs=0.01)
    assert diff.diff.low is not None and diff.diff.high is not None
    assert 0.9 < diff.diff.low < diff.diff.mean < diff.diff.high < 1.1
    assert diff.p_value is not None and diff.p_value < 1e-6
    assert "value" in json.dumps(evals.compare(report_a, report_b).as_dict())

    same = evals.compare(report_a, report_a).scorers["value"]
    assert same.n == 40 and same.diff.mean == 0.0 and same.p_value is None

    # Only shared examples pair up.
    fewer = evals.run(evals.dataset(app, "easy", [{"input": {"n": i}} for i in range(5)]), lambda x: 0, [value],
                      progress=False)  # fmt: skip
    assert evals.compare(report_a, fewer).scorers["value"].n == 0


def test_cli_report(app: tidal.App, tmp_path: Any) -> None:
    report = evals.run(evals.dataset(app, "qa", ROWS), lambda i: "Paris", [evals.exact_match], name="nightly",
                       progress=False)  # fmt: skip
    store = f"sqlite:///{tmp_path}/store.db"
    runner = CliRunner()
    out = runner.invoke(main, ["evals", "report", "nightly", "--app", "evals-test", "--store", store, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["scorers"]["exact_match"]["mean"] == report.scorers["exact_match"].mean
    text = runner.invoke(main, ["evals", "report", "nightly", "--app", "evals-test", "--store", store])
    assert text.exit_code == 0 and "exact_match" in text.output
    missing = runner.invoke(main, ["evals", "report", "weekly", "--app", "evals-test", "--store", store])
    assert missing.exit_code == 3 and "nightly" in missing.output
