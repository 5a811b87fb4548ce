"""Auth: API keys with scopes, stored hashed, revocable; JWTs with the same
scopes. Motion's Application accepted any key for any instance: these tests
prove Tidal does not."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

import tidal
from tidal.cli import main
from tidal.server import Auth, KeyStore, Scope, create_app, issue_token

SECRET = "test-secret-with-enough-length-for-hs256!"
A = "/components/Prefs/instances/A/flows/recommend"
B = "/components/Prefs/instances/B/flows/recommend"
PROPS = {"props": {"event": "x"}}


@pytest.fixture
def keys(sample_app: tidal.App) -> KeyStore:
    return KeyStore(sample_app.db)


@pytest.fixture
def secured(sample_app: tidal.App, keys: KeyStore) -> Iterator[TestClient]:
    with TestClient(create_app(sample_app, auth=Auth(keys, jwt_secret=SECRET))) as client:
        yield client


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def test_no_credentials_is_401(secured: TestClient) -> None:
    answer = secured.post(A, json=PROPS)
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert secured.get("/components").status_code == 401
    assert secured.get("/healthz").status_code == 200  # probes stay open


def test_key_scoped_to_instance_a_is_refused_on_instance_b(
    secured: TestClient, keys: KeyStore, sample_app: tidal.App
) -> None:
    key, _ = keys.create("user A", Scope(components=("Prefs",), instances=("A",), relations=(), write=True))
    assert secured.post(A, json=PROPS, headers=bearer(key)).status_code == 200
    refused = secured.post(B, json=PROPS, headers=bearer(key))
    assert refused.status_code == 403 and "Prefs/B" in refused.json()["message"]
    assert secured.get("/components/Prefs/instances/B/state", headers=bearer(key)).status_code == 403
    assert secured.post("/components/Echo/instances/A/flows/echo", json={}, headers=bearer(key)).status_code == 403
    assert secured.post("/relations/purchase/query", json={}, headers={"X-API-Key": key}).status_code == 403
    assert sample_app.store.get_version("Prefs", "B") is None
    listed = secured.get("/components", headers=bearer(key)).json()
    assert [c["name"] for c in listed] == ["Prefs"]


def test_patterns_reach_matching_instances(secured: TestClient, keys: KeyStore) -> None:
    key, _ = keys.create("team", Scope(components=("Pre*",), instances=("user-*",), write=True))
    ok = "/components/Prefs/instances/user-7/flows/recommend"
    assert secured.post(ok, json=PROPS, headers=bearer(key)).status_code == 200
    assert secured.post(A, json=PROPS, headers=bearer(key)).status_code == 403


def test_read_only_key_cannot_write(secured: TestClient, keys: KeyStore, sample_app: tidal.App) -> None:
    sample_app.components["Prefs"]("A")
    key, _ = keys.create("reader", Scope())
    assert secured.get("/components/Prefs/instances/A/state", headers=bearer(key)).status_code == 200
    refused = secured.post(A, json=PROPS, headers=bearer(key))  # recommend queues an update: a write
    assert refused.status_code == 403 and "may not write" in refused.json()["message"]
    insert = secured.post("/relations/purchase", json={"user": "A", "item": "x", "price": 1}, headers=bearer(key))
    assert insert.status_code == 403
    # A serve-only flow on an existing instance is a read; creating an instance is a write.
    sample_app.components["Echo"]("A")
    assert secured.post("/components/Echo/instances/A/flows/echo", json={}, headers=bearer(key)).status_code == 200
    assert secured.post("/components/Echo/instances/new/flows/echo", json={}, headers=bearer(key)).status_code == 403
    assert sample_app.store.get_version("Echo", "new") is None
    assert sample_app.store.pending("Prefs", "A") == 0


def test_revoked_key_is_401(secured: TestClient, keys: KeyStore) -> None:
    key, record = keys.create("temp", Scope(write=True))
    assert secured.post(A, json=PROPS, headers=bearer(key)).status_code == 200
    keys.revoke(record.id)
    answer = secured.post(A, json=PROPS, headers=bearer(key))
    assert answer.status_code == 401 and "revoked" in answer.json()["message"]


def test_wrong_secret_with_a_real_key_id_is_401(secured: TestClient, keys: KeyStore) -> None:
    key, _ = keys.create("k", Scope(write=True))
    forged = key[: key.rindex("_") + 1] + "A" * 43
    assert secured.post(A, json=PROPS, headers=bearer(forged)).status_code == 401


def test_keys_are_stored_hashed(keys: KeyStore, sample_app: tidal.App) -> None:
    key, record = keys.create("k", Scope())
    with sample_app.db.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.text("SELECT * FROM tidal_api_keys")).mappings()]
    assert len(rows) == 1 and key not in str(rows) and key.split("_")[-1] not in str(rows)
    assert rows[0]["id"] == record.id and len(rows[0]["digest"]) == 64


def test_jwt_carries_a_scope(secured: TestClient) -> None:
    token = issue_token(SECRET, Scope(components=("Prefs",), instances=("A",), write=True), ttl_seconds=60)
    assert secured.post(A, json=PROPS, headers=bearer(token)).status_code == 200
    assert secured.post(B, json=PROPS, headers=bearer(token)).status_code == 403


def test_forged_and_expired_jwts_are_401(secured: TestClient) -> None:
    scope = Scope(write=True)
    forged = issue_token("another-secret-of-the-same-length-hs256!!", scope)
    assert secured.post(A, json=PROPS, headers=bearer(forged)).status_code == 401
    expired = jwt.encode({"exp": int(time.time()) - 10, "tidal": scope.as_dict()}, SECRET, algorithm="HS256")
    answer = secured.post(A, json=PROPS, headers=bearer(expired))
    assert answer.status_code == 401 and "expired" in answer.json()["message"]
    unsigned = jwt.encode({"exp": int(time.time()) + 60, "tidal": scope.as_dict()}, None, algorithm="none")
    assert secured.post(A, json=PROPS, headers=bearer(unsigned)).status_code == 401
    no_exp = jwt.encode({"tidal": scope.as_dict()}, SECRET, algorithm="HS256")
    assert secured.post(A, json=PROPS, headers=bearer(no_exp)).status_code == 401
    assert secured.post(A, json=PROPS, headers=bearer("garbage")).status_code == 401


def test_keys_cli_create_list_revoke(tmp_path: object, sample_app: tidal.App) -> None:
    import json

    store = sample_app.store.url
    runner = CliRunner()
    created = runner.invoke(
        main,
        [
            "keys",
            "create",
            "--app",
            "served",
            "--store",
            store,
            "--name",
            "bot",
            "--instance",
            "A",
            "--write",
            "--json",
        ],
    )
    assert created.exit_code == 0, created.output
    record = json.loads(created.output)
    assert record["scope"] == {"components": ["*"], "instances": ["A"], "relations": [], "write": True}
    with TestClient(create_app(sample_app, auth=True)) as http:
        assert http.post(A, json=PROPS, headers=bearer(record["key"])).status_code == 200
        assert http.post(B, json=PROPS, headers=bearer(record["key"])).status_code == 403
        listed = runner.invoke(main, ["keys", "list", "--app", "served", "--store", store, "--json"])
        assert [k["id"] for k in json.loads(listed.output)] == [record["id"]]
        assert record["key"] not in listed.output
        revoked = runner.invoke(main, ["keys", "revoke", record["id"], "--app", "served", "--store", store])
        assert revoked.exit_code == 0, revoked.output
        assert http.post(A, json=PROPS, headers=bearer(record["key"])).status_code == 401
    missing = runner.invoke(main, ["keys", "revoke", "nope", "--app", "served", "--store", store])
    assert missing.exit_code == 1 and "no API key 'nope'" in missing.output


def test_keys_token_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["keys", "token", "--instance", "A"]).exit_code == 1
    monkeypatch.setenv("TIDAL_JWT_SECRET", SECRET)
    out = runner.invoke(main, ["keys", "token", "--component", "Prefs", "--instance", "A", "--write", "--ttl", "60"])
    claims = jwt.decode(out.output.strip(), SECRET, algorithms=["HS256"])
    assert claims["tidal"]["instances"] == ["A"] and claims["tidal"]["write"] is True


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.4", "::", "example.com"])
def test_serve_refuses_other_interfaces_without_auth(host: str) -> None:
    result = CliRunner().invoke(main, ["serve", "whatever.py", "--host", host])
    assert result.exit_code == 2 and "refusing to listen on" in result.output and "--api-key-required" in result.output


def test_loopback_hosts_are_recognised() -> None:
    from tidal.cli.serve import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "::", "host.example"))


def test_openapi_can_be_hidden(sample_app: tidal.App) -> None:
    with TestClient(create_app(sample_app, auth=True, openapi=False)) as http:
        assert http.get("/openapi.json").status_code == 404 and http.get("/docs").status_code == 404
    with TestClient(create_app(sample_app, auth=True)) as http:
        assert http.get("/openapi.json").status_code == 200  # public by default, like /healthz


def test_listings_show_only_what_the_scope_reaches(secured: TestClient, keys: KeyStore, sample_app: tidal.App) -> None:
    for name in ("user-1", "user-2", "admin"):
        sample_app.components["Prefs"](name)
    key, _ = keys.create("users", Scope(components=("Prefs",), instances=("user-*",), relations=("purchase",)))
    listed = secured.get("/components/Prefs/instances", headers=bearer(key)).json()
    assert [i["id"] for i in listed["instances"]] == ["user-1", "user-2"]
    assert [r["name"] for r in secured.get("/relations", headers=bearer(key)).json()] == ["purchase"]
    assert secured.get("/components/Echo/instances", headers=bearer(key)).status_code == 403
