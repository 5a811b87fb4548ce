"""Tool calls made by a model inside a flow run over HTTP stay within the
HTTP caller's scope: a key that may reach only its own orders cannot get
the model to read another customer's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

import tidal
from tidal import models
from tidal.server import Auth, KeyStore, Scope, create_app

SECRET = "test-secret-with-enough-length-for-hs256!"


class OrderProps(BaseModel):
    order_id: str


class AskProps(BaseModel):
    question: str
    customer: str


@pytest.fixture
def shop(tmp_path: Any, standin: Any) -> Iterator[tuple[tidal.App, Any]]:
    app = tidal.App("shop", store=f"sqlite:///{tmp_path}/shop.db")
    llm = models.connect(standin.base_url + "#stand-in", app=app)
    Orders = app.component("Orders")

    @Orders.serve("status", props=OrderProps)
    def status(state: Any, props: Any) -> str:
        return f"order {props['order_id']} has shipped"

    Assistant = app.component("Assistant")

    @Assistant.serve("ask", props=AskProps)
    def ask(state: Any, props: Any) -> str:
        # The model is offered the Orders of whichever customer the request names.
        tool = Orders.flow("status", instance=props["customer"])
        return llm.chat(props["question"], tools=[tool]).text

    for customer in ("alice", "bob"):
        Orders(customer).close()
        Assistant(customer).close()
    yield app, llm
    llm.close()
    app.close()


def test_a_tool_call_is_held_to_the_http_callers_scope(shop: tuple[tidal.App, Any]) -> None:
    app, _ = shop
    keys = KeyStore(app.db)
    key, _ = keys.create("alice", Scope(components=("Assistant", "Orders"), instances=("alice",), relations=()))
    with TestClient(create_app(app, auth=Auth(keys, jwt_secret=SECRET))) as client:
        headers = {"Authorization": f"Bearer {key}"}
        own = client.post(
            "/components/Assistant/instances/alice/flows/ask",
            json={"props": {"question": "use Orders_status please", "customer": "alice"}},
            headers=headers,
        )
        assert own.status_code == 200, own.text
        assert "has shipped" in own.json()["result"]
        # Alice asks about bob's orders: her key may run the Assistant as
        # alice, but the Orders tool on bob is outside her scope.
        other = client.post(
            "/components/Assistant/instances/alice/flows/ask",
            json={"props": {"question": "use Orders_status please", "customer": "bob"}},
            headers=headers,
        )
        assert other.status_code == 200, other.text
        assert "has shipped" not in other.json()["result"] and "denied" in other.json()["result"]
    app.flush_runs()
    tools = [r for r in app.sql("SELECT status, note FROM model_calls WHERE operation = 'tool'")]
    assert [r["status"] for r in tools] == ["ok", "error"]
    orders_runs = app.query(tidal.Run, {"component": "Orders"})
    assert [r.instance for r in orders_runs] == ["alice"]


def test_model_tokens_stream_through_the_http_ndjson_stream(tmp_path: Any, standin: Any) -> None:
    app = tidal.App("talk", store=f"sqlite:///{tmp_path}/talk.db")
    llm = models.connect(standin.base_url + "#stand-in", app=app)
    Chat = app.component("Chat")
    results: list[Any] = []

    @Chat.serve("talk")
    def talk(state: Any, props: Any) -> Any:
        s = llm.stream(props["q"], temperature=0.3, max_tokens=10)
        yield from s
        results.append(s.result)

    try:
        with (
            TestClient(create_app(app)) as client,
            client.stream("POST", "/components/Chat/instances/c/flows/talk/stream", json={"props": {"q": "hi"}}) as r,
        ):
            lines = [orjson.loads(line) for line in r.iter_lines() if line]
        items = [line["item"] for line in lines if "item" in line]
        assert len(items) == 10 and lines[-1]["done"] is True
        assert "".join(items) == results[0].text
        app.flush_runs()
        row = next(iter(app.sql("SELECT run_id, completion_tokens, ttft_ms FROM model_calls")))
        assert row["run_id"] == lines[-1]["run_id"] and row["completion_tokens"] == 10 and row["ttft_ms"] is not None
    finally:
        llm.close()
        app.close()
