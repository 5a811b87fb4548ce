"""The dashboard's model-usage routes, in process: what they answer for
model calls written by hand against real runs, and that they keep the
API's auth (401 without credentials, 403 beyond the key's scope, lists of
instances filtered by scope)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app
from fastapi.testclient import TestClient

import tidal
from tidal.relations.builtin import ModelCall
from tidal.server import Auth, KeyStore, Scope, create_app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tidal.App]:
    app = make_app("sqlite", tmp_path, name="modelsapi")
    yield app
    app.close()


@pytest.fixture
def runs(app: tidal.App) -> dict[str, str]:
    """Runs of Chat/A, Chat/B and Search/S, by "component/instance", with model calls."""
    for name in ("Chat", "Search"):
        comp = app.component(name)

        @comp.serve("ask")
        def ask(state: Any, props: Any) -> str:
            return "ok"

    runs: dict[str, str] = {}
    for comp_name, instance in (("Chat", "A"), ("Chat", "B"), ("Search", "S")):
        with app.components[comp_name](instance) as inst:  # type: ignore[operator]
            inst.run("ask")
            assert inst.last_run_id is not None
            runs[f"{comp_name}/{instance}"] = inst.last_run_id
    now = datetime.now(UTC)

    def call(key: str, model: str, cost: float, latency: float, **fields: Any) -> ModelCall:
        comp, instance = key.split("/")
        fields.setdefault("started_at", now)
        return ModelCall(run_id=runs[key], component=comp, instance=instance, flow="ask", model=model,
                         endpoint="https://api.example.com/v1", cost=cost, latency_ms=latency,
                         prompt_tokens=100, completion_tokens=10, **fields)  # fmt: skip

    app.insert_many(
        [
            call("Chat/A", "gpt-4o", 0.25, 100.0),
            call("Chat/A", "gpt-4o", 0.75, 300.0, cache_hit="exact"),
            call("Chat/B", "gpt-4o-mini", 0.01, 50.0),
            call("Search/S", "embed-small", 0.5, 20.0, operation="embedding"),
            call("Chat/B", "old-model", 9.0, 1.0, started_at=now - timedelta(days=2)),  # out of the default window
        ]
    )
    return runs


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_usage_per_model_flow_and_instance_day(app: tidal.App, runs: dict[str, str]) -> None:
    with TestClient(create_app(app)) as http:
        body = http.get("/dashboard/api/models/usage").json()
        models = {m["model"]: m for m in body["models"]}
        assert set(models) == {"gpt-4o", "gpt-4o-mini", "embed-small"}
        gpt = models["gpt-4o"]
        assert (gpt["calls"], gpt["tokens"], gpt["cost"], gpt["cache_hit_rate"]) == (2, 220, 1.0, 0.5)
        assert (gpt["latency_p50_ms"], gpt["latency_p95_ms"]) == (200.0, 290.0)
        flows = {(f["component"], f["flow"]): f for f in body["flows"]}
        assert flows[("Chat", "ask")]["calls"] == 3 and flows[("Chat", "ask")]["cost"] == pytest.approx(1.01)
        assert flows[("Search", "ask")]["cost"] == 0.5
        days = [(d["component"], d["instance"], d["cost"]) for d in body["instance_days"]]
        assert days == [("Chat", "A", 1.0), ("Search", "S", 0.5), ("Chat", "B", 0.01)]
        assert body["truncated"] is False and body["window_s"] == 86_400.0

        only = http.get("/dashboard/api/models/usage", params={"by": "flow"}).json()
        assert set(only) == {"window_s", "flows"}
        capped = http.get("/dashboard/api/models/usage", params={"by": "instance-day", "limit": 1}).json()
        assert len(capped["instance_days"]) == 1 and capped["truncated"] is True
        assert http.get("/dashboard/api/models/usage", params={"by": "nope"}).status_code == 422
        assert http.get("/dashboard/api/models/usage", params={"window_s": 0}).status_code == 422
        wider = http.get("/dashboard/api/models/usage", params={"window_s": 3 * 86_400, "by": "model"}).json()
        assert {m["model"] for m in wider["models"]} == {*models, "old-model"}

        comp = http.get("/dashboard/api/components/Chat/models").json()
        assert [f["flow"] for f in comp["flows"]] == ["ask"] and comp["flows"][0]["calls"] == 3
        assert {m["model"] for m in comp["models"]} == {"gpt-4o", "gpt-4o-mini"}
        assert http.get("/dashboard/api/components/Nope/models").status_code == 404


def test_runs_carry_their_model_totals_and_calls(app: tidal.App, runs: dict[str, str]) -> None:
    with TestClient(create_app(app)) as http:
        listed = {r["id"]: r for r in http.get("/dashboard/api/runs").json()}
        assert listed[runs["Chat/A"]]["models"] == {"calls": 2, "tokens": 220, "cost": 1.0}
        assert listed[runs["Search/S"]]["models"]["cost"] == 0.5
        assert listed[runs["Chat/B"]]["models"] == {"calls": 2, "tokens": 220, "cost": 9.01}  # the old call too
        calls = http.get(f"/dashboard/api/runs/{runs['Chat/A']}/models").json()
        assert [c["cost"] for c in sorted(calls, key=lambda c: c["cost"])] == [0.25, 0.75]
        assert all(c["run_id"] == runs["Chat/A"] and c["model"] == "gpt-4o" for c in calls)
        assert http.get("/dashboard/api/runs/unknown/models").json() == []


def test_scoped_key_sees_only_what_it_reaches(app: tidal.App, runs: dict[str, str]) -> None:
    keys = KeyStore(app.db)
    key, _ = keys.create("chat-a", Scope(components=("Chat",), instances=("A",)))
    with TestClient(create_app(app, auth=Auth(keys))) as http:
        for path in ("models/usage", "components/Chat/models", f"runs/{runs['Chat/A']}/models"):
            assert http.get(f"/dashboard/api/{path}").status_code == 401
        body = http.get("/dashboard/api/models/usage", headers=bearer(key)).json()
        assert {m["model"] for m in body["models"]} == {"gpt-4o", "gpt-4o-mini"}  # Chat's, not Search's
        assert {f["component"] for f in body["flows"]} == {"Chat"}
        assert [(d["component"], d["instance"]) for d in body["instance_days"]] == [("Chat", "A")]
        assert http.get("/dashboard/api/components/Search/models", headers=bearer(key)).status_code == 403
        assert http.get("/dashboard/api/components/Chat/models", headers=bearer(key)).status_code == 200
        assert len(http.get(f"/dashboard/api/runs/{runs['Chat/A']}/models", headers=bearer(key)).json()) == 2
        assert http.get(f"/dashboard/api/runs/{runs['Chat/B']}/models", headers=bearer(key)).json() == []
        assert http.get(f"/dashboard/api/runs/{runs['Search/S']}/models", headers=bearer(key)).json() == []
