"""The model client against the stand-in server, through the real openai
client: settings checked before sending, accounting rows in the run,
caches, retries, timeouts, streams, tools, structured output and sampling
helpers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from pydantic import BaseModel

import tidal
from tidal import context, models
from tidal.models import ModelCallError, ModelConfigError, ModelInputError, ModelStreamError
from tidal.server.scopes import Scope


@pytest.fixture
def app(tmp_path: Any) -> Any:
    a = tidal.App("models-test", store=f"sqlite:///{tmp_path}/store.db")
    yield a
    a.close()


@pytest.fixture
def connect() -> Any:
    """``models.connect``, closing each client (its HTTP connections) after the test."""
    made: list[Any] = []

    def make(url: str, **options: Any) -> Any:
        made.append(models.connect(url, **options))
        return made[-1]

    yield make
    for m in made:
        m.close()


@pytest.fixture
def llm(standin: Any, app: Any, connect: Any) -> Any:
    return connect(standin.base_url + "#stand-in", app=app, backoff=0.01, max_backoff=0.05, timeout=5)


def calls(app: Any, where: str = "1=1") -> list[dict[str, Any]]:
    rows = list(app.sql(f"SELECT * FROM model_calls WHERE {where} ORDER BY started_at, id"))
    for row in rows:  # JSON columns come back as text from raw SQL on SQLite
        for key in ("params", "note"):
            if isinstance(row[key], str):
                row[key] = json.loads(row[key])
    return rows


# -- settings and URLs --------------------------------------------------------


def test_unknown_scheme_and_missing_key_fail_at_connect(monkeypatch: Any, connect: Any) -> None:
    with pytest.raises(ModelConfigError, match="unknown model URL scheme 'ftp'"):
        connect("ftp://host/v1#m")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelConfigError, match="OPENAI_API_KEY"):
        connect("openai://gpt-4o-mini")
    with pytest.raises(ModelConfigError, match="names no model"):
        connect("http://127.0.0.1:1/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    m = connect("openai://gpt-4o-mini")
    assert m.name == "gpt-4o-mini" and m.endpoint.base_url == "https://api.openai.com/v1"
    assert "sk-test" not in repr(m) and "sk-test" not in repr(m.endpoint)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("temperature", -0.1, "temperature must be in"),
        ("top_p", 1.5, "top_p must be in"),
        ("top_p", 0, "top_p must be in"),
        ("n", 0, "n must be"),
        ("max_tokens", 0, "max_tokens must be"),
        ("top_k", 0, "top_k must be"),
        ("temprature", 1, "unknown sampling setting 'temprature'"),
    ],
)
def test_bad_sampling_values_are_refused_before_sending(
    llm: Any, standin: Any, setting: str, value: Any, message: str
) -> None:
    with pytest.raises(ModelInputError, match=message) as info:
        llm.chat("hello", **{setting: value})
    assert info.value.setting == setting
    assert standin.requests() == []


def test_a_prompt_over_the_context_window_is_refused_before_sending(standin: Any, app: Any, connect: Any) -> None:
    m = connect(standin.base_url + "#stand-in", app=app, context_window=100)
    with pytest.raises(ModelInputError, match="context window of 100") as info:
        m.chat("word " * 400)
    assert info.value.setting == "messages"
    assert standin.requests() == []


# -- calls and accounting -----------------------------------------------------


def test_a_call_in_a_serve_op_is_a_row_of_its_run(llm: Any, app: Any) -> None:
    models.prices.set("stand-in", input=1.0, output=2.0)
    try:
        Asker = app.component("Asker")

        @Asker.serve("ask")
        def ask(state: Any, props: Any) -> str:
            r = llm.chat(props["q"], temperature=0.5, top_p=0.9, top_k=40, max_tokens=20)
            return r.text

        with Asker("user-1") as asker:
            text = asker.run("ask", {"q": "what is a tide"})
            run_id = asker.last_run_id
        assert text
        rows = calls(app)
        assert len(rows) == 1
        row = rows[0]
        assert (row["run_id"], row["component"], row["instance"], row["flow"]) == (run_id, "Asker", "user-1", "ask")
        assert row["status"] == "ok" and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
        expected = (row["prompt_tokens"] * 1.0 + row["completion_tokens"] * 2.0) / 1e6
        assert row["cost"] == pytest.approx(expected)
        assert row["params"] == {"temperature": 0.5, "top_p": 0.9, "max_tokens": 20}
        # The join the dashboard and "cost per user per day" use.
        joined = list(
            app.sql(
                "SELECT r.instance, SUM(m.cost) AS cost FROM model_calls m JOIN runs r ON r.id = m.run_id "
                "GROUP BY r.instance"
            )
        )
        assert joined == [{"instance": "user-1", "cost": pytest.approx(expected)}]
    finally:
        models.prices.reset()


def test_sampling_settings_reach_the_endpoint(llm: Any, standin: Any) -> None:
    r = llm.chat("hi", temperature=0.3, top_p=0.8, top_k=5, seed=11, max_tokens=7, stop=["zzz"], n=2)
    sent = standin.requests()[-1]["body"]
    for key, value in {"temperature": 0.3, "top_p": 0.8, "top_k": 5, "seed": 11, "max_tokens": 7, "n": 2}.items():
        assert sent[key] == value
    assert sent["stop"] == ["zzz"]
    assert len(r.choices) == 2 and r.texts[0] != r.texts[1]


def test_logprobs_give_a_mean_logprob(llm: Any) -> None:
    r = llm.chat("hi", logprobs=True, top_logprobs=3, temperature=1.0)
    choice = r.choices[0]
    assert choice.token_logprobs and all(lp <= 0 for lp in choice.token_logprobs)
    assert r.logprob == pytest.approx(sum(choice.token_logprobs) / len(choice.token_logprobs))
    assert choice.top_logprobs is not None and all(len(t) == 3 for t in choice.top_logprobs)


# -- caches -------------------------------------------------------------------


def test_deterministic_calls_are_cached_in_the_store(llm: Any, standin: Any, app: Any, connect: Any) -> None:
    first = llm.chat("cache me", temperature=0)
    second = llm.chat("cache me", temperature=0)
    assert second.text == first.text and second.cache_hit == "exact" and second.cost == 0
    assert len(standin.requests()) == 1
    # A new client (empty in-process cache) finds the entry in the app's store.
    other = connect(llm.endpoint.url, app=app)
    assert other.chat("cache me", temperature=0).cache_hit == "exact"
    assert len(standin.requests()) == 1
    # Not deterministic: asked each time; another setting: another entry.
    llm.chat("cache me", temperature=0.7)
    llm.chat("cache me", temperature=0.7)
    llm.chat("cache me", temperature=0, max_tokens=3)
    assert len(standin.requests()) == 4
    rows = calls(app)
    assert [r["cache_hit"] for r in rows] == [None, "exact", "exact", None, None, None]


def test_semantic_cache_matches_close_questions_and_logs_the_similarity(
    standin: Any, app: Any, connect: Any, request: Any
) -> None:
    emb = models.embedder(standin.base_url + "#text-embedding-3-small", app=app)
    request.addfinalizer(emb.model.close)
    sem = models.SemanticCache(emb, threshold=0.8)
    m = connect(standin.base_url + "#stand-in", app=app, semantic_cache=sem)
    first = m.chat("how do I open a file in python", temperature=0.9, cache="semantic")
    close = m.chat("how do i open a file in python?", temperature=0.9, cache="semantic")
    far = m.chat("what is the capital of norway", temperature=0.9, cache="semantic")
    assert close.cache_hit == "semantic" and close.text == first.text and close.similarity >= 0.8
    assert far.cache_hit is None
    hits = calls(app, "cache_hit = 'semantic'")
    assert len(hits) == 1 and hits[0]["similarity"] == pytest.approx(close.similarity)


# -- failures -----------------------------------------------------------------


def test_429s_are_retried_after_retry_after_then_succeed(llm: Any, standin: Any, app: Any) -> None:
    standin.faults([{"kind": "429", "times": 2, "retry_after": 0.2}])
    t0 = time.perf_counter()
    r = llm.chat("retry me")
    assert time.perf_counter() - t0 >= 0.4  # Retry-After honoured, not the 10 ms backoff
    assert r.retries == 2 and r.text
    assert len(standin.requests()) == 3
    assert calls(app)[0]["retries"] == 2


def test_a_429_storm_is_surfaced_after_the_retries(llm: Any, standin: Any, app: Any) -> None:
    standin.faults([{"kind": "429", "retry_after": 0.01}])
    with pytest.raises(ModelCallError, match="after 3 retries: HTTP 429") as info:
        llm.chat("storm")
    assert info.value.status == 429 and info.value.retries == 3
    assert len(standin.requests()) == 4
    row = calls(app)[0]
    assert row["status"] == "error" and "429" in row["error"] and row["retries"] == 3


def test_500s_are_retried_and_400s_are_not(llm: Any, standin: Any, connect: Any) -> None:
    standin.faults([{"kind": "500", "times": 1}])
    assert llm.chat("five hundred").retries == 1
    standin.clear()
    m = connect(llm.endpoint.url, max_retries=2, backoff=0.01)
    with pytest.raises(ModelCallError, match="HTTP 400") as info:
        m.chat("x", extra_body={"top_k": -3})
    assert info.value.retries == 0


def test_a_timed_out_call_leaves_no_cache_entry(llm: Any, standin: Any, app: Any, connect: Any) -> None:
    m = connect(llm.endpoint.url, app=app, timeout=0.3, max_retries=0)
    standin.faults([{"kind": "slow", "delay": 1.5}])
    with pytest.raises(ModelCallError, match="timed out"):
        m.chat("slow one", temperature=0)
    standin.clear()
    n = len(standin.requests())
    r = m.chat("slow one", temperature=0)
    assert r.cache_hit is None and len(standin.requests()) == n + 1
    assert [row["status"] for row in calls(app)] == ["error", "ok"]


# -- streaming ----------------------------------------------------------------


def test_a_generator_serve_op_streams_model_tokens(llm: Any, app: Any) -> None:
    Chat = app.component("Chat")
    streams: list[Any] = []

    @Chat.serve("talk")
    def talk(state: Any, props: Any) -> Any:
        s = llm.stream(props["q"], temperature=0.2, max_tokens=12)
        streams.append(s)
        yield from s

    with Chat("c") as c:
        pieces = list(c.gen("talk", {"q": "tell me about rivers"}))
        run_id = c.last_run_id
    assert len(pieces) > 1
    result = streams[0].result
    assert "".join(pieces) == result.text and result.ttft is not None
    assert result.usage.completion_tokens == len(pieces)
    row = calls(app)[0]
    assert row["run_id"] == run_id and row["ttft_ms"] is not None and row["completion_tokens"] == len(pieces)


def test_a_stream_dropped_midway_is_reported_not_cut_silently(llm: Any, standin: Any, app: Any) -> None:
    standin.faults([{"kind": "drop", "after_tokens": 3}])
    s = llm.stream("a long answer please", max_tokens=30)
    got: list[str] = []
    with pytest.raises(ModelStreamError) as info:
        for piece in s:
            got.append(piece)
    assert info.value.text == "".join(got)
    assert calls(app)[0]["status"] == "error"


def test_async_chat_and_stream(llm: Any) -> None:
    async def main() -> tuple[Any, list[str], Any]:
        r = await llm.achat("async hello", temperature=0.4)
        s = llm.astream("async stream", temperature=0.4)
        pieces = [p async for p in s]
        await llm.aclose()
        return r, pieces, s.result

    r, pieces, result = asyncio.run(main())
    assert r.text and "".join(pieces) == result.text


# -- tools --------------------------------------------------------------------


class StatusProps(BaseModel):
    order_id: str


def orders(app: Any) -> Any:
    Orders = app.component("Orders")

    @Orders.serve("status", props=StatusProps)
    def status(state: Any, props: Any) -> str:
        """The shipping status of an order."""
        return f"order {props['order_id']} has shipped"

    return Orders


def test_a_flow_as_a_tool_is_a_child_run(llm: Any, app: Any) -> None:
    Orders = orders(app)
    r = llm.chat("please use Orders_status for my order", tools=[Orders.flow("status", instance="shop")])
    assert "has shipped" in r.text
    assert len(r.steps) == 2 and r.cost == sum(s.cost for s in r.steps)
    tool_rows = calls(app, "operation = 'tool'")
    assert len(tool_rows) == 1 and tool_rows[0]["status"] == "ok"
    child = tool_rows[0]["note"]["child_run"]
    run = list(app.sql("SELECT component, instance, flow FROM runs WHERE id = :id", {"id": child}))
    assert run == [{"component": "Orders", "instance": "shop", "flow": "status"}]
    assert tool_rows[0]["parent_call"] == r.steps[0].call_id


def test_a_tool_call_outside_the_callers_scope_is_refused(llm: Any, app: Any) -> None:
    Orders = orders(app)
    token = context.caller_scope.set(Scope(components=("Billing",)))
    try:
        r = llm.chat("use Orders_status", tools=[Orders.flow("status", instance="shop")])
    finally:
        context.caller_scope.reset(token)
    assert "denied" in r.text and "has shipped" not in r.text
    row = calls(app, "operation = 'tool'")[0]
    assert row["status"] == "error" and row["error"].startswith("denied")
    assert app.query(tidal.Run, {"component": "Orders"}) == []


def test_functions_as_tools_and_the_step_limit(llm: Any, standin: Any) -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    standin.script([{"match": "add", "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}])
    r = llm.chat("add them", tools=[add])
    assert "5" in r.text
    # The model never stops calling: the loop does, at max_steps.
    again = [{"name": "add", "arguments": {"a": 1, "b": 1}}]
    standin.script([{"match": ".", "tool_calls": again}, {"match": ".", "role": "tool", "tool_calls": again}])
    with pytest.raises(models.ToolLoopError, match="max_steps=2") as info:
        llm.chat("add forever", tools=[add], max_steps=2, tool_choice="required")
    assert info.value.limit == "max_steps"


# -- structured output and sampling -------------------------------------------


class Answer(BaseModel):
    city: str
    population: int


def test_structured_output_validates(llm: Any) -> None:
    answer = llm.structured("give me a city", Answer)
    assert isinstance(answer, Answer)


def test_malformed_structured_output_is_retried_then_reported(llm: Any, standin: Any) -> None:
    standin.script([{"match": ".", "answer": "{not json"}])
    with pytest.raises(models.StructuredOutputError) as info:
        llm.structured("give me a city", Answer, retries=2)
    assert info.value.raw == "{not json" and info.value.attempts == 3
    sent = standin.requests()
    assert len(sent) == 3
    # Each retry shows the model its reply and what was wrong with it.
    assert "does not fit" in sent[-1]["body"]["messages"][-1]["content"]


def test_best_of_by_logprob_and_by_scorer(llm: Any, app: Any) -> None:
    r = llm.best_of("write a line", n=4, temperature=1.0)
    scores = [c["score"] for c in r.note["candidates"]]
    assert r.choices[0].logprob == pytest.approx(max(scores))
    assert r.note["winner"] == scores.index(max(scores))
    longest = llm.best_of("write a line", n=4, temperature=1.0, by=len)
    assert len(longest.text) == max(len(c.text) for c in longest.choices)
    decisions = calls(app, "operation = 'decision'")
    assert len(decisions) == 2 and decisions[0]["note"]["winner"] == r.note["winner"]


def test_self_consistency_takes_the_majority(llm: Any, standin: Any) -> None:
    standin.script([{"match": "how many", "answers": ["42", "7", "42", "41", "42"]}])
    r = llm.self_consistency("how many moons", n=5, temperature=1.0)
    assert r.text == "42" and r.note["votes"] == {"'42'": 3, "'7'": 1, "'41'": 1}


def test_embeddings_through_the_endpoint(standin: Any, app: Any, request: Any) -> None:
    emb = models.embedder(standin.base_url + "#text-embedding-3-small", app=app)
    request.addfinalizer(emb.model.close)
    v = emb.embed(["open a file", "opening files", "the moon"])
    assert v.shape[0] == 3
    assert v[0] @ v[1] > v[0] @ v[2]
    assert calls(app)[0]["operation"] == "embedding"


def test_rate_limits_are_shared_through_the_apps_store(standin: Any, app: Any, connect: Any) -> None:
    a = connect(standin.base_url + "#stand-in", app=app, rpm=2, timeout=1)
    b = connect(standin.base_url + "#stand-in", app=app, rpm=2, timeout=1)
    a.chat("one")
    b.chat("two")
    # Two per minute are spent (between both clients): the next would wait ~30 s.
    with pytest.raises(ModelCallError, match="rate limit"):
        a.chat("three")
    assert len(standin.requests()) == 2
    # The bucket is the app store's: another app's store has its own.
    other = connect(standin.base_url + "#stand-in", rpm=2, timeout=1)
    assert other.chat("four").text
