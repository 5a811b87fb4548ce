"""examples/support_desk.py end to end on the stand-in model: the Orders
tool as a child run, the structured ticket, the best_of decision row, the
customer's memory updated in the background, and feedback remembered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import tidal
from tidal.cli.demo import load_example


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, tidal.App]]:
    monkeypatch.delenv("TIDAL_SUPPORT_MODEL", raising=False)
    ex = load_example("support_desk")
    app = tidal.App("support", store=f"sqlite:///{tmp_path / 'desk.db'}", home=tmp_path / "home")
    yield ex, app
    app.close()
    ex.close_model()


def rows(app: tidal.App, where: str) -> list[dict[str, Any]]:
    out = list(app.sql(f"SELECT * FROM model_calls WHERE {where} ORDER BY started_at, id"))
    for row in out:
        if isinstance(row["note"], str):
            row["note"] = json.loads(row["note"])
    return out


def test_a_ticket_end_to_end(desk: tuple[ModuleType, tidal.App]) -> None:
    ex, app = desk
    assert ex.choose_model() == ("stand-in", "TIDAL_SUPPORT_MODEL is not set")
    ana = ex.open_desk(app, "ana")
    out = ana.run("handle", props={"ticket": ex.SESSION[0][1]})
    run_id = ana.last_run_id

    # structured: the ticket as the pydantic model sees it
    assert ex.Ticket.model_validate(out["ticket"]).category == "shipping"
    assert out["ticket"]["urgency"] == "high" and out["ticket"]["order_id"] == "A-1001"
    # the tool: Orders.status of this customer ran as a child run, and its result reached the model
    assert '"status": "in transit"' in out["facts"]
    tool = rows(app, f"run_id = '{run_id}' AND operation = 'tool'")
    assert len(tool) == 1 and tool[0]["status"] == "ok"
    child = list(
        app.sql("SELECT component, instance, flow FROM runs WHERE id = :id", {"id": tool[0]["note"]["child_run"]})
    )
    assert child == [{"component": "Orders", "instance": "ana", "flow": "status"}]
    # best_of: three drafts, the winner by mean logprob, the decision a row of the run
    decision = rows(app, f"run_id = '{run_id}' AND operation = 'decision'")
    assert len(decision) == 1 and decision[0]["note"]["by"] == "mean token logprob"
    scores = [c["score"] for c in decision[0]["note"]["candidates"]]
    assert len(out["drafts"]) == ex.DRAFTS == len(scores)
    assert out["reply"] == ex.STANDIN_SCRIPT[6]["answers"][scores.index(max(scores))]
    chats = rows(app, f"run_id = '{run_id}' AND operation = 'chat'")
    assert len(chats) == 4  # classify, tool call + answer after the tool, the drafts
    assert all(r["component"] == "Desk" and r["instance"] == "ana" and r["flow"] == "handle" for r in chats)

    # memory: the update op noted the conversation in the background
    ana.flush_update()
    assert ana.read_state("tickets") == 1
    assert ana.read_state("notes") == ["shipping (high): late trail shoes needed for Saturday [order A-1001]"]

    # feedback is remembered, and the next draft is told about it
    app.feedback(run_id, score=-1, comment="too slow")
    ana.flush_update()
    assert [f["score"] for f in ana.read_state("feedback")] == [-1]
    assert "too slow" in ana.read_state("feedback")[0]["note"]
    ana.run("handle", props={"ticket": ex.SESSION[1][1]})
    ana.flush_update()
    assert ana.read_state("tickets") == 2
    ana.close()


def test_the_tool_sees_only_this_customers_orders(desk: tuple[ModuleType, tidal.App]) -> None:
    ex, app = desk
    ben = ex.open_desk(app, "ben")
    # ben asks about ana's order: the tool is bound to ben's Orders, which has no such order
    out = ben.run("handle", props={"ticket": "Where is order A-1001?"})
    assert "no such order" in out["facts"] and "trail shoes" not in out["facts"]
    ben.close()


def test_main_narrates_a_session(desk: tuple[ModuleType, tidal.App], capsys: pytest.CaptureFixture[str]) -> None:
    ex, _ = desk
    ex.main()
    text = capsys.readouterr().out
    assert "model: stand-in" in text
    assert "ticket:  billing, normal urgency, order A-1002" in text
    assert "ana's memory (tickets: 2)" in text and "disliked" in text and "liked" in text
    assert "3 in the runs log" in text
