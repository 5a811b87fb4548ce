"""The fast lane (flow calls past FastAPI's router) and the API-key cache:
same answers and error shapes as the FastAPI routes, and revocation honoured."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

import tidal
from tidal.server import Auth, KeyStore, Scope, create_app
from tidal.server import fastlane as fastlane_module

ECHO = "/components/Echo/instances/A/flows/echo"


@pytest.fixture
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The flows the fast lane ran (the rest went to FastAPI's routes)."""
    calls: list[str] = []
    run = fastlane_module.run_flow

    async def counted(ctx, comp, instance, flow, body, principal):  # type: ignore[no-untyped-def]
        calls.append(flow)
        return await run(ctx, comp, instance, flow, body, principal)

    monkeypatch.setattr(fastlane_module, "run_flow", counted)
    return calls


@pytest.fixture
def keys(sample_app: tidal.App) -> KeyStore:
    return KeyStore(sample_app.db, cache_seconds=60)


@pytest.fixture
def secured(sample_app: tidal.App, keys: KeyStore) -> Iterator[TestClient]:
    with TestClient(create_app(sample_app, auth=Auth(keys)), raise_server_exceptions=False) as client:
        yield client


def test_a_cached_key_takes_the_lane_with_the_same_answer(
    secured: TestClient, keys: KeyStore, lane_calls: list[str]
) -> None:
    key, _ = keys.create("k", Scope(write=True))
    headers = {"Authorization": f"Bearer {key}"}
    first = secured.post(ECHO, json={"props": {"x": 1}}, headers=headers)  # verified in the database
    assert lane_calls == []
    second = secured.post(ECHO, json={"props": {"x": 1}}, headers=headers)  # from the cache: the lane
    assert lane_calls == ["echo"]
    assert first.status_code == second.status_code == 200
    a, b = first.json(), second.json()
    assert {k: a[k] for k in ("component", "instance", "flow", "result")} == {
        k: b[k] for k in ("component", "instance", "flow", "result")
    }
    assert b["run_id"] and b["version"] == a["version"]
    assert secured.post(ECHO, json={"props": {"x": 1}}, headers={"X-API-Key": key}).status_code == 200
    assert len(lane_calls) == 2


def test_refusals_in_the_lane_keep_their_shapes(secured: TestClient, keys: KeyStore, lane_calls: list[str]) -> None:
    reader, _ = keys.create("reader", Scope(components=("Echo",), instances=("A",)))
    headers = {"X-API-Key": reader}
    assert secured.get("/components", headers=headers).status_code == 200  # now cached
    # creating an instance is a write: 403 from the lane, as from the route
    refused = secured.post(ECHO, json={}, headers=headers)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert lane_calls == ["echo"]
    # an op that raises: 500 op_failed
    writer, _ = keys.create("writer", Scope(write=True))
    headers = {"X-API-Key": writer}
    assert secured.post(ECHO, json={}, headers=headers).status_code == 200
    broke = secured.post("/components/Echo/instances/A/flows/boom", json={}, headers=headers)
    assert broke.status_code == 500 and broke.json()["error"] == "op_failed"
    assert lane_calls[-1] == "boom"
    # what the lane does not take goes to FastAPI: the same 422s and 401s as before
    bad = secured.post("/components/Prefs/instances/A/flows/recommend", json={"props": {}}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"
    assert lane_calls[-1] == "boom"
    garbled = secured.post(ECHO, content=b"{not json", headers={**headers, "Content-Type": "application/json"})
    assert garbled.status_code == 422 and garbled.json()["error"] == "validation_error"  # FastAPI's answer
    nobody = secured.post(ECHO, json={})
    assert nobody.status_code == 401 and nobody.headers["www-authenticate"] == "Bearer"


def test_revocation_in_this_process_is_honoured_at_once(
    secured: TestClient, sample_app: tidal.App, keys: KeyStore
) -> None:
    key, record = keys.create("temp", Scope(write=True))
    headers = {"Authorization": f"Bearer {key}"}
    assert secured.post(ECHO, json={}, headers=headers).status_code == 200
    assert keys.cached(key) is not None
    KeyStore(sample_app.db).revoke(record.id)  # another KeyStore: every one of this process forgets
    assert keys.cached(key) is None
    assert secured.post(ECHO, json={}, headers=headers).status_code == 401


def test_revocation_elsewhere_is_honoured_within_cache_seconds(sample_app: tidal.App) -> None:
    keys = KeyStore(sample_app.db, cache_seconds=0.2)
    key, record = keys.create("temp", Scope(write=True))
    assert keys.verify(key) is not None and keys.cached(key) is not None
    with sample_app.db.begin() as conn:  # as `tidal keys revoke` in another process would
        conn.execute(keys.table.update().where(keys.table.c.id == record.id).values(revoked_at=datetime.now(UTC)))
    assert keys.verify(key) is not None  # still trusted from the cache, for at most cache_seconds
    import time

    time.sleep(0.25)
    assert keys.cached(key) is None and keys.verify(key) is None


def test_no_cache_reads_the_table_every_time(sample_app: tidal.App) -> None:
    keys = KeyStore(sample_app.db, cache_seconds=0)
    key, _ = keys.create("k", Scope())
    assert keys.verify(key) is not None and keys.cached(key) is None
