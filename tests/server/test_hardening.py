"""Hostile and out-of-scope requests: values no store can hold, 404s that
must not leak other tenants' names, instance scope on the built-in
relations, state that fails its HMAC, bodies and paths that do not parse,
and the error shape every refusal has. The checks on values, bodies and
paths run twice: on the embedded SQLite app, and on an app with ``redis://``
state and PostgreSQL relations (what scale-out serves from)."""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import Field

import tidal
from tidal.config import Settings
from tidal.exceptions import ConfigError
from tidal.relations.builtin import Feedback, Run
from tidal.server import create_app
from tidal.server.auth import JWT_SECRET_ENV, Auth, Scope, issue_token
from tidal.server.keys import KeyStore

from .sample import Purchase, define

SECRET = "test-secret-with-enough-length-for-hs256!"


class Tally(tidal.Record):
    n: int = 0
    note: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)


@pytest.fixture
def keys(sample_app: tidal.App) -> KeyStore:
    return KeyStore(sample_app.db)


@pytest.fixture
def api(sample_app: tidal.App) -> FastAPI:
    return create_app(sample_app, relations=[Tally], max_body_bytes=64 * 1024)


@pytest.fixture
def client(api: FastAPI) -> Iterator[TestClient]:
    with TestClient(api, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def secured(sample_app: tidal.App, keys: KeyStore) -> Iterator[TestClient]:
    api = create_app(sample_app, relations=[Tally], auth=Auth(keys, jwt_secret=SECRET))
    with TestClient(api, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(params=["sqlite", "redis+postgresql"])
def backend_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tidal.App]:
    """The sample app on SQLite, or on ``redis://`` state with its relations in PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sample_app")
        return
    app = tidal.App(
        "served",
        store=request.getfixturevalue("redis_url"),
        db=request.getfixturevalue("pg_url"),
        home=tmp_path / "home",
        settings=Settings(lease_seconds=2.0, sweep_seconds=0.2),
    )
    try:
        define(app)
        app.db.register(Purchase)
        yield app
    finally:
        app.close()


@pytest.fixture
def backend_api(backend_app: tidal.App) -> FastAPI:
    return create_app(backend_app, relations=[Tally], max_body_bytes=64 * 1024)


@pytest.fixture
def backend_client(backend_api: FastAPI) -> Iterator[TestClient]:
    with TestClient(backend_api, raise_server_exceptions=False) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def raw_json(client: TestClient, path: str, text: str | bytes, **kw: Any) -> Any:
    return client.post(path, content=text, headers={"content-type": "application/json", **kw.pop("headers", {})}, **kw)


def assert_error(answer: Any, status: int | tuple[int, ...], code: str | None = None) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert answer.status_code in statuses, (answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    body: dict[str, Any] = answer.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if code is not None:
        assert body["error"] == code, body
    return body


# -- 1. values no column can hold -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (f'{{"n": {2**70}}}', "n"),
        ('{"note": "a\\udc80"}', "note"),
        (f'{{"meta": {{"k": {-(2**64)}}}}}', "meta"),
        ('{"meta": {"k": ["\\ud800"]}}', "meta"),
    ],
)
def test_unstorable_record_values_are_422_naming_the_field(
    backend_client: TestClient, backend_app: tidal.App, body: str, field: str
) -> None:
    client, sample_app = backend_client, backend_app
    one = assert_error(raw_json(client, "/relations/tally", body), 422, "validation_error")
    assert field in one["message"] and one["detail"][0]["loc"][:3] == ["body", 0, field]
    batch = assert_error(raw_json(client, "/relations/tally/batch", f'[{{"n": 1}}, {body}]'), 422)
    assert batch["detail"][0]["loc"][:3] == ["body", 1, field]
    generic = assert_error(raw_json(client, "/relations/tally%2E/batch", f"[{body}]"), 404)
    assert "tally" in generic["known"]
    assert sample_app.query(Tally) == []


@pytest.mark.parametrize(("where", "field"), [(f'{{"n": {2**70}}}', "n"), ('{"note": "\\udc80"}', "note")])
def test_unstorable_filter_values_are_422_naming_the_field(backend_client: TestClient, where: str, field: str) -> None:
    client = backend_client
    answer = raw_json(client, "/relations/tally/query", f'{{"where": {where}}}')
    assert field in assert_error(answer, 422, "validation_error")["message"]


# -- 2. 404s name only what the scope reaches --------------------------------------------


def test_a_404_lists_only_instances_the_scope_reaches(
    secured: TestClient, keys: KeyStore, sample_app: tidal.App
) -> None:
    for name in ("tenant-a1", "tenant-b-secret", "other"):
        sample_app.components["Prefs"](name)
    key, _ = keys.create("tenant a", Scope(components=("Prefs",), instances=("tenant-a*",), relations=("purchase",)))
    for path in (
        "/components/Prefs/instances/tenant-a-nope/state",
        "/dashboard/api/components/Prefs/instances/tenant-a-nope",
        "/dashboard/api/components/Prefs/instances/tenant-a-nope/history?key=events",
    ):
        body = assert_error(secured.get(path, headers=bearer(key)), 404, "unknown_instance")
        assert body["known"] == ["tenant-a1"], path
        assert "secret" not in body["message"] and "other" not in body["message"]
    component = assert_error(secured.get("/components/Nope", headers=bearer(key)), 404)
    assert component["known"] == ["Prefs"] and "Echo" not in component["message"]
    relation = assert_error(secured.post("/relations/nope/query", json={}, headers=bearer(key)), 404)
    assert relation["known"] == ["purchase"] and "tally" not in relation["message"]


# -- 3. instance scope on runs and feedback ----------------------------------------------


def test_runs_and_feedback_relations_show_only_the_scoped_instances(
    secured: TestClient, keys: KeyStore, sample_app: tidal.App
) -> None:
    runs = {}
    for name in ("A", "B"):
        inst = sample_app.components["Echo"](name)
        for i in range(3):
            inst.run("echo", {"secret": f"{name}{i}"})
        runs[name] = inst.last_run_id
    sample_app.feedback(runs["A"], score=1)
    sample_app.feedback(runs["B"], score=0, comment="B's secret")
    key, _ = keys.create("a", Scope(components=("Echo",), instances=("A",), relations=("*",)))
    found = secured.post("/relations/runs/query", json={"limit": 2}, headers=bearer(key)).json()["records"]
    assert len(found) == 2 and {r["instance"] for r in found} == {"A"}
    everything = secured.post("/relations/runs/query", json={"limit": 1000}, headers=bearer(key)).json()["records"]
    assert sorted(r["props"]["secret"] for r in everything) == ["A0", "A1", "A2"]
    paged = secured.post("/relations/runs/query", json={"offset": 2}, headers=bearer(key)).json()["records"]
    assert [r["instance"] for r in paged] == ["A"]
    for where in ({"instance": "B"}, {"component": "Echo", "instance": "B"}, {"id": runs["B"]}):
        answer = secured.post("/relations/runs/query", json={"where": where}, headers=bearer(key))
        assert answer.status_code == 200 and answer.json()["records"] == [], where
    feedback = secured.post("/relations/feedback/query", json={}, headers=bearer(key)).json()["records"]
    assert [f["run_id"] for f in feedback] == [runs["A"]]
    generic = secured.post("/relations/runs%2F/query", json={}, headers=bearer(key))
    assert generic.status_code == 404
    everyone, _ = keys.create("all", Scope(relations=("*",)))
    all_runs = secured.post("/relations/runs/query", json={}, headers=bearer(everyone)).json()["records"]
    assert {r["instance"] for r in all_runs} == {"A", "B"}


# -- 4. state that fails its HMAC --------------------------------------------------------


def test_state_failing_its_hmac_is_a_clear_error_and_cannot_be_rolled_back_to(
    client: TestClient, sample_app: tidal.App
) -> None:
    prefs = sample_app.components["Prefs"]("X")
    good = sample_app.store.get_version("Prefs", "X")
    assert good is not None
    forged = b"\x01" + b"\x00" * 32 + pickle.dumps(["forged"], protocol=5)
    sample_app.store.commit("Prefs", "X", {"events": forged}, expected_version=good)
    sample_app.forget(sample_app.components["Prefs"], "X")
    bad = sample_app.store.get_version("Prefs", "X")
    state = assert_error(client.get("/components/Prefs/instances/X/state"), 500, "state_integrity")
    assert "HMAC" in state["message"] and "events" in state["message"]
    history = client.get("/dashboard/api/components/Prefs/instances/X/history", params={"key": "events"}).json()
    bad_version = next(h["version"] for h in history if h["version"] != min(x["version"] for x in history))
    refused = client.post(
        "/dashboard/api/components/Prefs/instances/X/rollback", json={"key": "events", "version": bad_version}
    )
    assert "HMAC" in assert_error(refused, 409, "state_integrity")["message"]
    assert sample_app.store.get_version("Prefs", "X") == bad  # nothing was written
    first = min(h["version"] for h in history)
    restored = client.post(
        "/dashboard/api/components/Prefs/instances/X/rollback", json={"key": "events", "version": first}
    )
    assert restored.status_code == 200, restored.text
    assert client.get("/components/Prefs/instances/X/state").json()["keys"]["events"]["value"] == []
    del prefs


# -- 5. depth, bodies, paths, the JWT secret --------------------------------------------


def test_props_nested_too_deep_are_422_and_the_depth_is_configurable(
    backend_client: TestClient, backend_app: tidal.App
) -> None:
    client, sample_app = backend_client, backend_app
    deep = "[" * 900 + "]" * 900
    for path in ("/components/Echo/instances/d/flows/echo", "/components/Echo/instances/d/flows/echo/stream"):
        answer = raw_json(client, path, f'{{"props": {{"x": {deep}}}}}')
        assert "nested at most 64" in assert_error(answer, 422, "validation_error")["message"]
    assert sample_app.store.get_version("Echo", "d") is None
    shallow = create_app(sample_app, max_props_depth=3)
    with TestClient(shallow) as c:
        assert c.post("/components/Echo/instances/d/flows/echo", json={"props": {"x": [[1]]}}).status_code == 200
        assert_error(c.post("/components/Echo/instances/d/flows/echo", json={"props": {"x": [[[1]]]}}), 422)


@pytest.mark.parametrize(
    "body", ["[" * 1200 + "]" * 1200, b'{"props": {"x": "\xff"}}', b"\xef\xbb\xbf{}\xff", '{"props": '], ids=str
)
def test_bodies_that_do_not_parse_answer_the_error_shape(
    backend_client: TestClient, backend_app: tidal.App, body: str | bytes
) -> None:
    client = backend_client
    body_text = body if isinstance(body, str) else body.decode("latin-1")
    for path in ("/components/Echo/instances/p/flows/echo", "/relations/tally", "/relations/purchase/query"):
        answer = raw_json(client, path, body)
        assert "detail" not in answer.json() or "error" in answer.json(), answer.text
        assert_error(answer, (400, 422)), (path, body_text[:20])
    assert backend_app.store.list_instances("Echo") == [] and backend_app.query(Tally) == []


@pytest.mark.parametrize("segment", ["%FF", "a%C3", "%ED%B3%80", "%C0%AF"])
def test_instance_paths_that_are_not_utf8_are_refused(
    backend_client: TestClient, backend_app: tidal.App, segment: str
) -> None:
    client, sample_app = backend_client, backend_app
    answer = client.post(f"/components/Echo/instances/{segment}/flows/echo", json={"props": {}})
    assert_error(answer, 400, "invalid_path")
    assert sample_app.store.list_instances("Echo") == []
    ok = client.post("/components/Echo/instances/%C3%A9/flows/echo", json={"props": {}})
    assert ok.status_code == 200 and ok.json()["instance"] == "é"


def test_a_weak_jwt_secret_is_refused_naming_the_variable(
    sample_app: tidal.App, keys: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for weak in ("x", "s" * 31, b"k" * 64):
        with pytest.raises(ConfigError, match=JWT_SECRET_ENV):
            Auth(keys, jwt_secret=weak)
        with pytest.raises(ConfigError, match=JWT_SECRET_ENV):
            issue_token(weak, Scope())
    monkeypatch.setenv(JWT_SECRET_ENV, "x")
    with pytest.raises(ConfigError, match=f"{JWT_SECRET_ENV}.*at least 32 bytes, got 1"):
        Auth.for_app(sample_app)
    monkeypatch.setenv(JWT_SECRET_ENV, SECRET)
    assert Auth.for_app(sample_app).jwt_secret == SECRET.encode()


# -- 6. promises ---------------------------------------------------------------------------


def test_feedback_needs_write_scope_on_the_runs_instance(
    secured: TestClient, keys: KeyStore, sample_app: tidal.App
) -> None:
    run_ids = {}
    for name in ("A", "B"):
        inst = sample_app.components["Echo"](name)
        inst.run("echo", {})
        run_ids[name] = inst.last_run_id
    writer_a, _ = keys.create("a", Scope(components=("Echo",), instances=("A",), write=True))
    reader, _ = keys.create("reader", Scope(write=False))
    for key, run in ((writer_a, run_ids["B"]), (reader, run_ids["A"]), (reader, run_ids["B"])):
        answer = secured.post(f"/runs/{run}/feedback", json={"score": 1}, headers=bearer(key))
        assert_error(answer, 403, "forbidden")
    assert sample_app.query(Feedback) == []
    ok = secured.post(f"/runs/{run_ids['A']}/feedback", json={"score": 1}, headers=bearer(writer_a))
    assert ok.status_code == 201
    assert [f.run_id for f in sample_app.query(Feedback)] == [run_ids["A"]]


def test_queue_shows_a_scoped_key_only_its_components(
    secured: TestClient, keys: KeyStore, sample_app: tidal.App
) -> None:
    echo_only, _ = keys.create("echo", Scope(components=("Echo",)))
    prefs_only, _ = keys.create("prefs", Scope(components=("Prefs",)))
    assert [r["component"] for r in secured.get("/queue", headers=bearer(prefs_only)).json()] == ["Prefs"]
    assert secured.get("/queue", headers=bearer(echo_only)).json() == []
    asked = secured.get("/queue", params={"component": "Prefs"}, headers=bearer(echo_only))
    assert asked.status_code == 200 and asked.json() == []
    dashboard = secured.get("/dashboard/api/queue", headers=bearer(echo_only)).json()
    assert dashboard["components"] == []


# -- 7. a battery of hostile inputs on every route ---------------------------------------

HOSTILE_BODIES: list[tuple[str, bytes]] = [
    ("lone surrogate", b'{"props": {"x": "\\udc80"}, "score": 1, "key": "\\udc80", "version": 1, "n": 1}'),
    ("lone surrogate list", b'[{"note": "\\ud800", "user": "\\udc80", "item": "x", "price": 1}]'),
    ("huge int", b'{"props": {"n": %d}, "score": 1, "version": %d, "where": {"n": %d}}' % (2**70, 2**70, 2**70)),
    ("huge int list", b'[{"n": %d, "user": "u", "item": "x", "price": 1}]' % 2**70),
    ("deep 300", b'{"props": {"x": ' + b"[" * 300 + b"]" * 300 + b"}}"),
    ("deep 1200", b"[" * 1200 + b"]" * 1200),
    ("invalid utf-8", b'{"props": {"x": "\xff\xfe"}, "user": "\xc3"}'),
    ("oversize", b'{"props": {"x": "' + b"a" * (70 * 1024) + b'"}}'),
]
HOSTILE_SEGMENTS = ["%FF", "%ED%B3%80", "\\udc80", "9" * 30]
DOCUMENTED_5XX = {"state_integrity"}


def _paths(api: FastAPI, segment: str) -> Iterator[tuple[str, str]]:
    """Every operation of the API (from its OpenAPI document), with
    ``segment`` in its instance and run id."""
    values = {"component": "Echo", "flow": "echo", "relation": "tally", "op_id": "9" * 30}
    for path, operations in api.openapi()["paths"].items():
        for method in operations:
            yield method.upper(), re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), segment), path)


def test_hostile_inputs_on_every_route_answer_the_error_shape_and_write_nothing(
    backend_api: FastAPI, backend_client: TestClient, backend_app: tidal.App
) -> None:
    api, client, sample_app = backend_api, backend_client, backend_app
    sample_app.components["Echo"]("kept").run("echo", {"x": 1})
    sample_app.insert(Tally(n=1))
    sample_app.runlog.flush()
    before = (
        {c: sorted(sample_app.store.list_instances(c)) for c in sample_app.components},
        len(sample_app.query(Tally)),
        len(sample_app.query(Purchase)),
        len(sample_app.query(Run)),
        len(sample_app.query(Feedback)),
    )
    sent = 0
    for segment in HOSTILE_SEGMENTS:
        for method, path in _paths(api, segment):
            answers = []
            if method == "GET":
                answers.append(client.get(path, params={"key": "\\udc80", "keys": "%FF", "limit": 2**70}))
                answers.append(client.get(path + "?key=%FF&component=%ED%B3%80&window_s=1e999"))
            else:
                for _, body in HOSTILE_BODIES:
                    answers.append(raw_json(client, path, body))
            for answer in answers:
                sent += 1
                if answer.status_code < 400:
                    # only reads of the kept rows may succeed; nothing may run or be written
                    assert method == "GET" or path.endswith("/query"), (method, path, answer.text[:300])
                    continue
                body = assert_error(answer, tuple(range(400, 600)))
                if answer.status_code >= 500:
                    assert body["error"] in DOCUMENTED_5XX, (method, path, answer.status_code, answer.text[:300])
    assert sent > 500
    sample_app.runlog.flush()
    after = (
        {c: sorted(sample_app.store.list_instances(c)) for c in sample_app.components},
        len(sample_app.query(Tally)),
        len(sample_app.query(Purchase)),
        len(sample_app.query(Run)),
        len(sample_app.query(Feedback)),
    )
    assert after == before
    # the runs log, feedback and health still work
    run = client.post("/components/Echo/instances/kept/flows/echo", json={"props": {"y": "é"}})
    assert run.status_code == 200, run.text
    feedback = client.post(f"/runs/{run.json()['run_id']}/feedback", json={"score": 1, "comment": "fine"})
    assert feedback.status_code == 201, feedback.text
    found = client.post("/relations/runs/query", json={"where": {"id": run.json()["run_id"]}}).json()["records"]
    assert found and found[0]["props"] == {"y": "é"}
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    assert json.loads(client.get("/queue").text) is not None
