"""Runs and model calls exported as OpenTelemetry spans, read back from a
real receiver (Arize Phoenix, started by the tests): names, parent / child
links, GenAI attributes, token counts and error status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import tidal
from tidal import models
from tidal.models import ModelCallError


@pytest.fixture
def app(tmp_path: Any) -> Iterator[tidal.App]:
    a = tidal.App("traces-test", store=f"sqlite:///{tmp_path}/store.db")
    yield a
    a.close()


@pytest.fixture
def llm(standin: Any, app: tidal.App) -> Iterator[Any]:
    model = models.connect(standin.base_url + "#stand-in", app=app, backoff=0.01, max_backoff=0.02, timeout=5)
    yield model
    model.close()


def named(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


def rows(app: tidal.App, query: str) -> list[dict[str, Any]]:
    out = list(app.sql(query))
    for row in out:
        if isinstance(row.get("params"), str):
            row["params"] = json.loads(row["params"])
    return out


def export(app: tidal.App, phoenix: Any, project: str) -> Any:
    return app.export_traces(phoenix.otlp_url, resource={"openinference.project.name": project})


def sent(app: tidal.App, exporter: Any) -> None:
    app.flush_runs()
    assert exporter.flush(30)


def test_runs_and_model_calls_arrive_as_genai_spans(
    app: tidal.App, llm: Any, standin: Any, phoenix: Any, project: str
) -> None:
    exporter = export(app, phoenix, project)
    Desk = app.component("Desk")

    @Desk.init_state
    def setup() -> dict[str, Any]:
        return {"seen": 0}

    @Desk.serve("answer")
    def answer(state: Any, props: Any) -> str:
        r = llm.chat(props["q"], temperature=0.2, top_p=0.9, top_k=40, max_tokens=32, seed=7, stop=["\n\n"])
        return str(r.text)

    @Desk.update("answer")
    def learn(state: Any, props: Any) -> dict[str, Any]:
        llm.embed([props["q"]])
        return {"seen": state["seen"] + 1}

    @Desk.serve("broken")
    def broken(state: Any, props: Any) -> str:
        return str(llm.chat("this one fails").text)

    inst = Desk("d1")
    inst.run("answer", {"q": "what does nonlocal do?"}, flush_update=True)
    serve_run = inst.last_run_id
    standin.faults([{"kind": "500"}])
    with pytest.raises(ModelCallError):
        inst.run("broken", {})
    failed_run = inst.last_run_id
    standin.faults([])
    sent(app, exporter)

    spans = phoenix.wait_for_spans(project, 6)
    assert exporter.stats().exported == 6 and exporter.stats().failed == exporter.stats().dropped == 0

    # The serve run: the root of its trace, with Tidal's attributes and times.
    [serve] = named(spans, "serve Desk.answer")
    run = app.get(tidal.Run, serve_run)
    assert run is not None
    assert serve["parent_id"] is None
    a = serve["attributes"]
    assert (a["tidal.component"], a["tidal.instance"], a["tidal.flow"]) == ("Desk", "d1", "answer")
    assert (a["tidal.kind"], a["tidal.status"], a["tidal.run_id"], a["tidal.version"]) == ("serve", "ok", serve_run, 1)
    assert serve["status_code"] == "UNSET"
    assert serve["start_time"][:26] == run.started_at.isoformat()[:26]

    # Its model call: a child span in the GenAI conventions, tokens as in model_calls.
    [chat] = [s for s in named(spans, "chat stand-in") if s["status_code"] != "ERROR"]
    assert chat["parent_id"] == serve["context"]["span_id"]
    assert chat["context"]["trace_id"] == serve["context"]["trace_id"]
    call = rows(app, f"SELECT * FROM model_calls WHERE run_id = '{serve_run}'")[0]
    c = chat["attributes"]
    assert c["gen_ai.operation.name"] == "chat"
    assert c["gen_ai.provider.name"] == c["gen_ai.system"] == "openai_compatible"
    assert c["gen_ai.request.model"] == "stand-in"
    assert (c["gen_ai.request.temperature"], c["gen_ai.request.top_p"]) == (0.2, 0.9)
    assert (c["gen_ai.request.max_tokens"], c["gen_ai.request.seed"]) == (32, 7)
    assert c["gen_ai.request.stop_sequences"] == ["\n\n"]
    assert c["gen_ai.usage.input_tokens"] == call["prompt_tokens"] > 0
    assert c["gen_ai.usage.output_tokens"] == call["completion_tokens"] > 0
    assert c["server.address"] == "127.0.0.1"
    assert c["server.port"] == int(standin.base_url.split(":")[2].split("/")[0])
    assert c["tidal.call_id"] == call["id"] and c["tidal.run_id"] == serve_run
    assert c["tidal.retries"] == 0 and c["tidal.cost_usd"] == call["cost"]

    # The update run and its embedding call.
    [update] = named(spans, "update Desk.answer")
    assert update["attributes"]["tidal.kind"] == "update" and update["attributes"]["tidal.version"] == 2
    [embed] = named(spans, "embeddings stand-in")
    assert embed["parent_id"] == update["context"]["span_id"]
    assert embed["attributes"]["gen_ai.operation.name"] == "embeddings"
    assert embed["attributes"]["gen_ai.usage.input_tokens"] > 0

    # The failed op: the run and its call both marked as errors.
    [failed] = named(spans, "serve Desk.broken")
    assert failed["status_code"] == "ERROR" and failed["attributes"]["tidal.status"] == "error"
    assert failed["attributes"]["tidal.run_id"] == failed_run
    assert failed["attributes"]["error.type"].endswith("ModelCallError")
    assert [e["name"] for e in failed["events"]] == ["exception"]
    [bad_call] = [s for s in named(spans, "chat stand-in") if s["status_code"] == "ERROR"]
    assert bad_call["parent_id"] == failed["context"]["span_id"]
    assert bad_call["attributes"]["error.type"] == "ModelCallError"
    assert bad_call["attributes"]["tidal.retries"] > 0


def test_a_tool_call_is_a_child_of_the_call_that_asked_for_it(
    app: tidal.App, llm: Any, phoenix: Any, project: str
) -> None:
    exporter = export(app, phoenix, project)
    Orders = app.component("Orders")

    @Orders.serve("status")
    def status(state: Any, props: Any) -> str:
        """The shipping status of an order."""
        return f"order {props.get('order_id')} has shipped"

    Agent = app.component("Agent")

    @Agent.serve("ask")
    def ask(state: Any, props: Any) -> str:
        tools = [Orders.flow("status", instance="shop")]
        return str(llm.chat("please use Orders_status for my order", tools=tools).text)

    assert "has shipped" in Agent("a1").run("ask", {})
    sent(app, exporter)
    spans = phoenix.wait_for_spans(project, 5)  # the agent's run, two chat calls, the tool, the tool's run

    [agent] = named(spans, "serve Agent.ask")
    chats = sorted(named(spans, "chat stand-in"), key=lambda s: s["start_time"])
    assert len(chats) == 2 and all(c["parent_id"] == agent["context"]["span_id"] for c in chats)
    [tool] = named(spans, "execute_tool Orders_status")
    assert tool["parent_id"] == chats[0]["context"]["span_id"]
    assert tool["context"]["trace_id"] == agent["context"]["trace_id"]
    assert tool["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert tool["attributes"]["gen_ai.tool.name"] == "Orders_status"
    [child] = named(spans, "serve Orders.status")
    assert tool["attributes"]["tidal.child_run"] == child["attributes"]["tidal.run_id"]
