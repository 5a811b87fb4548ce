"""tidal.admin's model usage over the ``model_calls`` relation, on SQLite and
PostgreSQL: per model, per flow, per instance and day, a run's calls and
per-run totals, and the documented "cost per user per day" SQL. Runs are
real (flows run on the app); their model calls are inserted as the runs
log would write them, with the run's id and the expected numbers written
out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tidal
from tidal import admin
from tidal.relations.builtin import ModelCall

NOW = datetime.now(UTC).replace(microsecond=0)
# Five minutes ago, but never before today's midnight (UTC), so that both recent calls are today's.
RECENT = max(NOW - timedelta(minutes=5), NOW.replace(hour=0, minute=2, second=0))
YESTERDAY = NOW - timedelta(days=1)
TODAY_DAY, YESTERDAY_DAY = RECENT.date().isoformat(), YESTERDAY.date().isoformat()
ENDPOINT = "https://api.example.com/v1"


def run_ids(app: tidal.App) -> dict[str, str]:
    """Runs ``ask`` for instances u1 and u2 and ``summarize`` for u1; their run ids."""
    Chat = app.component("Chat")

    @Chat.serve("ask")
    def ask(state: Any, props: Any) -> str:
        return "answer"

    @Chat.serve("summarize")
    def summarize(state: Any, props: Any) -> str:
        return "summary"

    ids = {}
    for instance, flow in (("u1", "ask"), ("u2", "ask"), ("u1", "summarize")):
        with Chat(instance) as inst:
            inst.run(flow)
            assert inst.last_run_id is not None
            ids[f"{instance}/{flow}"] = inst.last_run_id
    return ids


def call(run_id: str, instance: str, flow: str, model: str, **fields: Any) -> ModelCall:
    fields.setdefault("started_at", RECENT)
    return ModelCall(run_id=run_id, component="Chat", instance=instance, flow=flow, model=model, endpoint=ENDPOINT,
                     **fields)  # fmt: skip


@pytest.fixture
def seeded(db_app: tidal.App) -> dict[str, str]:
    ids = run_ids(db_app)
    u1_ask, u2_ask, u1_sum = ids["u1/ask"], ids["u2/ask"], ids["u1/summarize"]
    db_app.insert_many(
        [
            call(u1_ask, "u1", "ask", "gpt-4o", prompt_tokens=100, completion_tokens=20, cached_tokens=40,
                 cost=0.01, latency_ms=100.0, ttft_ms=30.0, retries=1, started_at=RECENT - timedelta(minutes=1)),
            call(u1_ask, "u1", "ask", "gpt-4o", prompt_tokens=200, completion_tokens=30, cost=0.02,
                 latency_ms=300.0, ttft_ms=50.0),
            call(u2_ask, "u2", "ask", "gpt-4o", prompt_tokens=50, completion_tokens=10, cost=0.0,
                 latency_ms=2.0, cache_hit="exact"),
            call(u2_ask, "u2", "ask", "gpt-4o", status="error", error="rate limited", latency_ms=500.0, retries=2),
            call(u1_sum, "u1", "summarize", "llama-3", prompt_tokens=1000, completion_tokens=100, latency_ms=800.0,
                 cache_hit="semantic", similarity=0.97),
            # Yesterday's: in a two-day window, not in a one-hour one.
            call(u1_ask, "u1", "ask", "gpt-4o", prompt_tokens=10, completion_tokens=1, cost=0.5, latency_ms=50.0,
                 started_at=YESTERDAY),
        ]
    )  # fmt: skip
    return ids


def test_usage_by_model(db_app: tidal.App, seeded: dict[str, str]) -> None:
    found = admin.usage_by_model(db_app, window=timedelta(hours=1))
    assert [m.model for m in found] == ["gpt-4o", "llama-3"]  # costliest first
    gpt, llama = found
    assert (gpt.calls, gpt.errors, gpt.retries) == (4, 1, 3)
    assert (gpt.prompt_tokens, gpt.completion_tokens, gpt.cached_tokens, gpt.tokens) == (350, 60, 40, 410)
    assert gpt.cost == pytest.approx(0.03)
    # latencies 2, 100, 300, 500: numpy's linear percentiles
    assert gpt.latency_p50_ms == pytest.approx(200.0)
    assert gpt.latency_p95_ms == pytest.approx(470.0)
    assert gpt.ttft_p50_ms == pytest.approx(40.0)  # of the two streamed calls only
    assert (gpt.cache_hits, gpt.cache_hit_rate) == (1, 0.25)
    assert (llama.calls, llama.cache_hits, llama.cache_hit_rate, llama.ttft_p50_ms) == (1, 1, 1.0, None)
    assert llama.latency_p50_ms == llama.latency_p95_ms == 800.0
    assert gpt.component is None and gpt.flow is None
    wider = {m.model: m for m in admin.usage_by_model(db_app, window=timedelta(days=2))}
    assert wider["gpt-4o"].calls == 5 and wider["gpt-4o"].cost == pytest.approx(0.53)
    assert admin.usage_by_model(db_app, window=timedelta(hours=1), components=["Other"]) == []


def test_usage_by_flow(db_app: tidal.App, seeded: dict[str, str]) -> None:
    found = admin.usage_by_flow(db_app, window=timedelta(hours=1))
    assert [(u.component, u.flow, u.calls, u.errors) for u in found] == [
        ("Chat", "ask", 4, 1),
        ("Chat", "summarize", 1, 0),
    ]
    ask = found[0]
    assert ask.cost == pytest.approx(0.03) and ask.tokens == 410 and ask.model is None
    assert ask.latency_p95_ms == pytest.approx(470.0)


def test_usage_by_instance_day(db_app: tidal.App, seeded: dict[str, str]) -> None:
    found = admin.usage_by_instance_day(db_app, window=timedelta(days=2), now=NOW)
    today, yesterday = TODAY_DAY, YESTERDAY_DAY
    shown = [(u.day, u.instance, u.calls, u.tokens, round(u.cost, 6)) for u in found]
    assert shown == [
        (today, "u1", 3, 1450, 0.03),
        (today, "u2", 2, 60, 0.0),
        (yesterday, "u1", 1, 11, 0.5),
    ]
    assert found[1].errors == 1


def test_calls_of_run_and_per_run_totals(db_app: tidal.App, seeded: dict[str, str]) -> None:
    u1_ask, u2_ask = seeded["u1/ask"], seeded["u2/ask"]
    calls = admin.calls_of_run(db_app, u1_ask)
    assert [c.cost for c in calls] == [0.02, 0.01, 0.5]  # newest first
    first = calls[1]
    assert (first.model, first.endpoint, first.prompt_tokens, first.cached_tokens, first.retries) == (
        "gpt-4o", ENDPOINT, 100, 40, 1)  # fmt: skip
    assert first.started_at is not None and datetime.fromisoformat(first.started_at) == RECENT - timedelta(minutes=1)
    assert [c.run_id for c in admin.calls_of_run(db_app, u1_ask, limit=1)] == [u1_ask]
    assert admin.calls_of_run(db_app, "no-such-run") == []
    # The run ids are those of real runs in the runs log.
    logged = {r.id for r in admin.runs(db_app, component="Chat")}
    assert set(seeded.values()) <= logged
    totals = admin.run_model_totals(db_app, [*logged, "no-such-run"])
    assert set(totals) == set(seeded.values())
    assert (totals[u1_ask].calls, totals[u1_ask].tokens) == (3, 361)
    assert totals[u1_ask].cost == pytest.approx(0.53)
    assert (totals[u2_ask].calls, totals[u2_ask].tokens, totals[u2_ask].cost) == (2, 60, 0.0)


def test_cost_per_user_per_day_sql_from_the_docs(db_app: tidal.App, seeded: dict[str, str]) -> None:
    rows = db_app.sql(
        """
        SELECT instance, date(started_at) AS day, count(*) AS calls,
               sum(prompt_tokens + completion_tokens) AS tokens, sum(cost) AS cost
        FROM model_calls
        WHERE component = :component AND started_at >= :since
        GROUP BY instance, date(started_at)
        ORDER BY day DESC, cost DESC
        """,
        {"component": "Chat", "since": (NOW - timedelta(days=2)).date().isoformat()},
    )
    shown = [(r["instance"], str(r["day"]), r["calls"], r["tokens"], round(float(r["cost"]), 6)) for r in rows]
    today, yesterday = TODAY_DAY, YESTERDAY_DAY
    assert shown == [("u1", today, 3, 1450, 0.03), ("u2", today, 2, 60, 0.0), ("u1", yesterday, 1, 11, 0.5)]


def test_no_calls_no_usage(db_app: tidal.App) -> None:
    assert admin.usage_by_model(db_app) == [] and admin.usage_by_flow(db_app) == []
    assert admin.usage_by_instance_day(db_app) == [] and admin.run_model_totals(db_app, []) == {}
    with pytest.raises(ValueError, match="window must be positive"):
        admin.usage_by_model(db_app, window=timedelta(0))
