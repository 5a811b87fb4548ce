"""Experiments: Variants params assigned stickily per instance, read by ops,
recorded on every run; reports from feedback with always-valid intervals;
one-variant and no-data messages; promotion."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tidal
from tidal.cli import main
from tidal.experiment import boundary


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tidal.App]:
    a = tidal.App("experiments", store=f"sqlite:///{tmp_path}/store.db", home=tmp_path / "home")
    yield a
    a.close()


def styled(app: tidal.App, variants: tidal.Variants, name: str = "Assistant") -> tidal.Component:
    comp = app.component(name, params={"style": variants, "greeting": "hi"})

    @comp.serve("ask")
    def ask(state: Any, props: Any) -> str:
        return f"{comp.params['greeting']} {comp.params['style']}"

    @comp.update("ask")
    def seen(state: Any, props: Any) -> dict[str, Any]:
        return {"style": comp.params["style"]}

    return comp


def test_assignment_is_sticky_deterministic_and_weighted() -> None:
    v = tidal.Variants(a="terse", b="friendly")
    first = [v.assign("Assistant", "style", f"u{i}") for i in range(2000)]
    assert first == [v.assign("Assistant", "style", f"u{i}") for i in range(2000)]
    assert 900 < first.count("a") < 1100
    # The param and the component are part of the hash: another experiment splits differently.
    assert first != [v.assign("Assistant", "tone", f"u{i}") for i in range(2000)]
    skewed = tidal.Variants(a=1, b=2, weights={"a": 0.9, "b": 0.1})
    share = [skewed.assign("C", "p", str(i)) for i in range(2000)].count("a") / 2000
    assert 0.87 < share < 0.93
    with pytest.raises(tidal.DefinitionError, match="unknown variants"):
        tidal.Variants(a=1, weights={"z": 1})
    with pytest.raises(tidal.DefinitionError, match="at least one"):
        tidal.Variants()


def test_ops_read_the_instance_variant_and_runs_record_it(app: tidal.App) -> None:
    v = tidal.Variants(a="terse", b="friendly")
    comp = styled(app, v)
    for i in range(8):
        inst = comp(f"u{i}")
        want = v.values[v.assign("Assistant", "style", f"u{i}")]
        assert inst.run("ask", flush_update=True) == f"hi {want}"
        assert inst.read_state("style") == want  # update ops too
        assert inst.run("ask", ignore_cache=True) == f"hi {want}"  # sticky
    # Outside ops the param is the Variants itself; other params stay plain.
    assert comp.params["style"] is v and comp.params["greeting"] == "hi"
    app.flush_runs(always=True)
    comp("u0").flush_update()
    app.flush_runs(always=True)
    runs = app.query(tidal.Run)
    assert len([r for r in runs if r.kind == "serve"]) == 16 and {r.kind for r in runs} == {"serve", "update"}
    exp = app.experiment("Assistant.style")
    for run in runs:
        assert run.variants == {"style": exp.variant(run.instance)}


def test_components_without_variants_record_none_and_keep_a_plain_dict(app: tidal.App) -> None:
    comp = app.component("Plain", params={"k": 1})

    @comp.serve("f")
    def f(state: Any, props: Any) -> int:
        return int(comp.params["k"])

    assert type(comp.params) is dict
    comp("x").run("f")
    assert app.sql("SELECT variants FROM runs").tuples() == [(None,)]


def feedback_loop(app: tidal.App, comp: tidal.Component, n: int, means: dict[str, float]) -> None:
    rng = random.Random(7)
    for i in range(n):
        inst = comp(f"u{i}")
        answer = inst.run("ask")
        style = answer.split()[-1]
        run_id = inst.last_run_id
        assert run_id is not None
        app.feedback(run_id, score=rng.gauss(means[style], 0.2))


def test_report_from_feedback_finds_the_better_variant(app: tidal.App) -> None:
    comp = styled(app, tidal.Variants(a="terse", b="friendly"))
    feedback_loop(app, comp, 300, {"terse": 0.4, "friendly": 0.7})
    report = app.experiment("Assistant.style").report()
    rows = {v.variant: v for v in report.variants}
    assert rows["a"].n + rows["b"].n == 300 and rows["a"].runs == rows["a"].n
    assert rows["a"].mean == pytest.approx(0.4, abs=0.06) and rows["b"].mean == pytest.approx(0.7, abs=0.06)
    for row in rows.values():
        assert row.low is not None and row.high is not None and row.low < row.mean < row.high  # type: ignore[operator]
    assert report.leader == "b" and "'b' leads" in report.message
    assert "confidence sequence" in report.method
    data = report.as_dict()
    assert data["variants"][1]["value"] == "friendly" and "b" in str(report)


def test_confidence_sequence_is_wider_than_a_fixed_n_interval_and_shrinks() -> None:
    assert boundary(100, 1.0, 0.05) > 1.96 / 10
    assert boundary(10_000, 1.0, 0.05) < boundary(1000, 1.0, 0.05) < boundary(100, 1.0, 0.05)
    assert boundary(1, 1.0, 0.05) == float("inf")


def test_peeking_after_every_sample_keeps_the_error_rate(app: tidal.App) -> None:
    """Under the null (equal means), looking after every sample must rarely
    ever show a leader: the point of an always-valid interval."""
    rng = random.Random(1)
    false_alarms = 0
    for _ in range(200):
        xs: list[float] = []
        for n in range(1, 301):
            xs.append(rng.gauss(0, 1))
            if n >= 10:
                mean = sum(xs) / n
                sd = (sum((x - mean) ** 2 for x in xs) / (n - 1)) ** 0.5
                if abs(mean) > boundary(n, sd, 0.05):
                    false_alarms += 1
                    break
    assert false_alarms / 200 < 0.08


def test_no_data_and_one_variant_say_so(app: tidal.App) -> None:
    comp = styled(app, tidal.Variants(a="terse", b="friendly"))
    assert "no runs yet" in app.experiment("Assistant.style").report().message
    comp("u1").run("ask")
    assert "no feedback scores yet" in app.experiment("Assistant.style").report().message
    assert "no scores of scorer 'judge' yet" in app.experiment("Assistant.style").report(metric="judge").message
    styled(app, tidal.Variants(only="terse"), name="Solo")
    report = app.experiment("Solo.style").report()
    assert "has one variant ('only')" in report.message and report.leader is None
    with pytest.raises(tidal.NotFoundError, match=r"no Variants param 'greeting'.*known: Assistant.style"):
        app.experiment("Assistant.greeting")
    with pytest.raises(tidal.DefinitionError, match=r"Component.param"):
        app.experiment("nodot")
    assert app.experiments() == ["Assistant.style", "Solo.style"]


def test_promote_pins_every_instance_and_persists(app: tidal.App, tmp_path: Path) -> None:
    comp = styled(app, tidal.Variants(a="terse", b="friendly"))
    answers = {comp(f"u{i}").run("ask") for i in range(20)}
    assert answers == {"hi terse", "hi friendly"}
    exp = app.experiment("Assistant.style")
    with pytest.raises(tidal.DefinitionError, match="no variant 'c'"):
        exp.promote("c")
    exp.promote("b")
    assert {comp(f"u{i}").run("ask") for i in range(20)} == {"hi friendly"}  # cached results dropped too
    assert exp.promoted == "b" and "promoted" in str(exp.report())
    # Persisted: a new app on the same store sees the promotion.
    other = tidal.App("experiments", store=f"sqlite:///{tmp_path}/store.db", home=tmp_path / "home")
    try:
        again = styled(other, tidal.Variants(a="terse", b="friendly"))
        assert {again(f"u{i}").run("ask") for i in range(20)} == {"hi friendly"}
    finally:
        other.close()
    exp.unpromote()
    assert exp.promoted is None
    assert {comp(f"u{i}").run("ask") for i in range(20)} == {"hi terse", "hi friendly"}


def test_report_without_the_definition_reads_variants_from_the_runs(app: tidal.App, tmp_path: Path) -> None:
    comp = styled(app, tidal.Variants(a="terse", b="friendly"))
    feedback_loop(app, comp, 40, {"terse": 0.4, "friendly": 0.7})
    app.flush_runs()
    bare = tidal.App("experiments", store=f"sqlite:///{tmp_path}/store.db", home=tmp_path / "home")
    try:
        report = bare.experiment("Assistant.style").report()
        assert sorted(v.variant for v in report.variants) == ["a", "b"]
        assert sum(v.n for v in report.variants) == 40
    finally:
        bare.close()


def test_cli_report(app: tidal.App, tmp_path: Path) -> None:
    comp = styled(app, tidal.Variants(a="terse", b="friendly"))
    feedback_loop(app, comp, 30, {"terse": 0.4, "friendly": 0.7})
    app.flush_runs(always=True)
    store = f"sqlite:///{tmp_path}/store.db"
    env = {"TIDAL_HOME": str(tmp_path / "home")}
    out = CliRunner().invoke(
        main, ["experiments", "report", "Assistant.style", "--app", "experiments", "--store", store, "--json"], env=env
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["experiment"] == "Assistant.style" and sum(v["n"] for v in data["variants"]) == 30
    text = CliRunner().invoke(
        main, ["experiments", "report", "Assistant.style", "--app", "experiments", "--store", store], env=env
    )
    assert "variant" in text.output and "confidence sequence" in text.output
