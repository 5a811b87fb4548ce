"""Relations over HTTP: insert one or many (all or nothing), query, feedback,
and the read-only built-in relations."""

from __future__ import annotations

from fastapi.testclient import TestClient

import tidal

from .sample import Purchase


def test_insert_returns_the_stored_record_and_fires_its_trigger(http: TestClient, sample_app: tidal.App) -> None:
    answer = http.post("/relations/purchase", json={"user": "u1", "item": "boots", "price": 90})
    assert answer.status_code == 201
    stored = answer.json()["records"][0]
    assert stored["item"] == "boots" and stored["id"] and stored["created_at"]
    assert sample_app.get(Purchase, stored["id"]) is not None
    prefs = sample_app.components["Prefs"]("u1")
    prefs.flush_update()
    assert prefs.read_state("items") == ["boots"]


def test_a_bad_record_is_422_naming_the_field(http: TestClient, sample_app: tidal.App) -> None:
    answer = http.post("/relations/purchase", json={"user": "u1", "item": "boots", "price": -1})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "price"]
    extra = http.post("/relations/purchase", json={"user": "u1", "item": "x", "price": 1, "colour": "red"})
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "colour"]
    assert sample_app.query(Purchase) == []


def test_batch_is_all_or_nothing(http: TestClient, sample_app: tidal.App) -> None:
    good = {"user": "u1", "item": "a", "price": 1}
    bad = http.post("/relations/purchase/batch", json=[good, {"user": "u1", "item": "", "price": 1}])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", 1, "item"]
    assert sample_app.query(Purchase) == []
    ok = http.post("/relations/purchase/batch", json=[good, {**good, "item": "b"}])
    assert ok.status_code == 201 and [r["item"] for r in ok.json()["records"]] == ["a", "b"]
    duplicate = http.post("/relations/purchase", json={**good, "id": ok.json()["records"][0]["id"]})
    assert duplicate.status_code == 409


def test_query_filters_orders_and_limits(http: TestClient) -> None:
    rows = [{"user": u, "item": i, "price": p} for u, i, p in [("a", "x", 1), ("a", "y", 3), ("b", "z", 2)]]
    http.post("/relations/purchase/batch", json=rows)
    found = http.post("/relations/purchase/query", json={"where": {"user": "a"}, "order_by": "-price"}).json()
    assert [r["item"] for r in found["records"]] == ["y", "x"]
    limited = http.post("/relations/purchase/query", json={"order_by": "price", "limit": 2}).json()["records"]
    assert [r["item"] for r in limited] == ["x", "z"]
    bad_field = http.post("/relations/purchase/query", json={"where": {"colour": "red"}})
    assert bad_field.status_code == 422 and bad_field.json()["detail"][0]["loc"] == ["body", "where", "colour"]
    bad_order = http.post("/relations/purchase/query", json={"order_by": "colour"})
    assert bad_order.status_code == 422 and "colour" in bad_order.json()["message"]


def test_unknown_relation_is_404_listing_the_known_ones(http: TestClient) -> None:
    for path in ("/relations/nope", "/relations/nope/batch", "/relations/nope/query"):
        answer = http.post(path, json={} if path.endswith("query") or path.endswith("nope") else [])
        assert answer.status_code == 404, path
        assert answer.json()["known"] == ["feedback", "purchase", "runs"]


def test_runs_and_feedback_are_read_only(http: TestClient) -> None:
    assert http.post("/relations/runs", json={"component": "x"}).status_code == 405
    assert http.post("/relations/feedback", json={"run_id": "x"}).status_code == 405


def test_feedback_on_a_run(http: TestClient, sample_app: tidal.App) -> None:
    run_id = http.post("/components/Echo/instances/e/flows/echo", json={"props": {"k": 1}}).json()["run_id"]
    answer = http.post(f"/runs/{run_id}/feedback", json={"score": 1, "label": "good"})
    assert answer.status_code == 201
    assert answer.json()["component"] == "Echo" and answer.json()["instance"] == "e"
    stored = sample_app.query(tidal.Feedback, {"run_id": run_id})
    assert [(f.score, f.label) for f in stored] == [(1.0, "good")]
    runs = http.post("/relations/runs/query", json={"where": {"instance": "e"}}).json()["records"]
    assert [r["id"] for r in runs] == [run_id]
    assert http.post("/runs/nope/feedback", json={"score": 1}).status_code == 404


def test_queue_health_and_readiness(http: TestClient) -> None:
    http.post("/components/Prefs/instances/u1/flows/recommend", json={"props": {"event": "x"}, "flush_update": True})
    rows = {r["component"]: r for r in http.get("/queue").json()}
    assert rows["Prefs"]["pending"] == 0 and rows["Prefs"]["updates"] >= 1
    assert http.get("/queue", params={"component": "Nope"}).status_code == 404
    assert http.get("/healthz").json()["status"] == "ok"
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["store"]["ok"] is True


def test_readiness_fails_when_the_store_is_gone(http: TestClient, sample_app: tidal.App) -> None:
    sample_app.store.close()
    ready = http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["store"]["ok"] is False


def test_a_value_postgresql_refuses_is_422(pg_url: str) -> None:
    from fastapi.testclient import TestClient

    from tidal.server import create_app

    app = tidal.App("pg", store="memory://", db=pg_url)
    with TestClient(create_app(app, relations=[Purchase])) as http:
        answer = http.post("/relations/purchase", json={"user": "u1", "item": "a\x00b", "price": 1})
        assert answer.status_code == 422 and answer.json()["error"] == "invalid_value"
        assert app.query(Purchase) == []
    app.close()
