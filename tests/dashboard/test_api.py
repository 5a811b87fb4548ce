"""The dashboard's page and JSON routes, in process: what they answer, and
that they keep the API's auth (401 without credentials, 403 beyond the
key's scope, writes refused to read-only keys, lists filtered by scope).
The routes call ``tidal.admin``; what they answer is checked against what
the fixture wrote and the store's own verbs, not against ``tidal.admin``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app
from fastapi.testclient import TestClient

import tidal
from tidal.server import Auth, KeyStore, Scope, create_app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tidal.App]:
    app = make_app("sqlite", tmp_path, name="dashapi")
    Notes = app.component("Notes")

    @Notes.init_state
    def setup() -> dict[str, Any]:
        return {"items": []}

    @Notes.serve("add")
    def show(state: Any, props: Any) -> int:
        return len(state["items"])

    @Notes.update("add")
    def add(state: Any, props: Any) -> dict[str, Any]:
        if props.get("fail"):
            raise RuntimeError("cannot add " + props["item"])
        return {"items": [*state["items"], props["item"]]}

    Other = app.component("Other")

    @Other.serve("ping")
    def ping(state: Any, props: Any) -> str:
        return "pong"

    for name in ("A", "B"):
        with Notes(name) as n:
            n.run("add", props={"item": "x"}, flush_update=True)
            n.run("add", props={"item": "y", "fail": True})
            with pytest.raises(tidal.UpdateFailedError):
                n.flush_update("add")
    Other("o").run("ping")
    yield app
    app.close()


@pytest.fixture
def keys(app: tidal.App) -> KeyStore:
    return KeyStore(app.db)


@pytest.fixture
def secured(app: tidal.App, keys: KeyStore) -> Iterator[TestClient]:
    with TestClient(create_app(app, auth=Auth(keys))) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_page_and_assets_are_served_with_a_strict_policy(app: tidal.App) -> None:
    with TestClient(create_app(app)) as http:
        moved = http.get("/dashboard", follow_redirects=False)
        assert moved.status_code == 308 and moved.headers["location"] == "dashboard/"
        page = http.get("/dashboard/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<script src="static/dashboard.js"' in page.text
        script = http.get("/dashboard/static/dashboard.js")
        assert script.status_code == 200 and ".innerHTML" not in script.text
        assert http.get("/dashboard/static/dashboard.css").headers["content-type"].startswith("text/css")
        assert http.get("/dashboard/static/secret.key").status_code == 404
        assert "/dashboard/api/queue" in http.get("/openapi.json").json()["paths"]
    with TestClient(create_app(app, dashboard=False)) as bare:
        assert bare.get("/dashboard/").status_code == 404
        assert bare.get("/dashboard/api/overview").status_code == 404


def failed_instances(app: tidal.App) -> list[str]:
    """The instances of Notes' failed ops, oldest first, as the store lists them."""
    return [f.instance for f in reversed(app.store.list_failures("Notes"))]


def test_data_routes_answer_what_the_store_holds(app: tidal.App) -> None:
    with TestClient(create_app(app)) as http:
        overview = http.get("/dashboard/api/overview").json()
        by_name = {c["name"]: c for c in overview["components"]}
        assert by_name["Notes"]["freshness"]["failed"] == 2 and by_name["Other"]["freshness"] is None
        assert by_name["Notes"]["flows"][0]["updates"] == ["add"]
        comp = http.get("/dashboard/api/components/Notes").json()
        assert [(i["instance"], i["version"], i["keys"]) for i in comp["instances"]] == [("A", 2, 1), ("B", 2, 1)]
        inst = http.get("/dashboard/api/components/Notes/instances/A").json()
        (items,) = app.store.describe_state("Notes", "A") or []
        assert (items.key, items.version) == ("items", 2)  # the fixture's one successful update
        assert inst["state"] == {
            "component": "Notes",
            "instance": "A",
            "version": 2,
            "keys": [
                {"key": "items", "version": 2, "size": items.size, "written_at": items.written_at, "value": "['x']"}
            ],
            "size": items.size,
        }
        assert [f["summary"] for f in inst["failures"]] == ["RuntimeError: cannot add y"]
        history = http.get("/dashboard/api/components/Notes/instances/A/history", params={"key": "items"}).json()
        assert [v["version"] for v in history] == [2, 1] and history[0]["current"]
        missing = http.get("/dashboard/api/components/Notes/instances/A/history", params={"key": "nope"})
        assert missing.status_code == 404 and missing.json()["known"] == ["items"]
        assert http.get("/dashboard/api/components/Notes/instances/Z").status_code == 404
        assert http.get("/dashboard/api/components/Nope").json()["known"] == ["Notes", "Other"]

        rolled = http.post("/dashboard/api/components/Notes/instances/A/rollback", json={"key": "items", "version": 1})
        assert rolled.status_code == 200 and rolled.json()["new_version"] == 3
        assert app.components["Notes"]("A").read_state("items") == []

        queue = http.get("/dashboard/api/queue").json()
        assert [q["component"] for q in queue["components"]] == ["Notes"]
        failed = {f["instance"]: f for f in queue["failures"]}
        retried = http.post(f"/dashboard/api/components/Notes/instances/A/failures/{failed['A']['op_id']}/retry")
        assert retried.status_code == 200 and retried.json()["new_op_id"] > failed["A"]["op_id"]
        wrong = http.post(f"/dashboard/api/components/Notes/instances/A/failures/{failed['B']['op_id']}/drop")
        assert wrong.status_code == 404  # B's op is not A's
        dropped = http.post(f"/dashboard/api/components/Notes/instances/B/failures/{failed['B']['op_id']}/drop")
        assert dropped.status_code == 200
        assert failed_instances(app) in (["A"], [])  # A's retry fails again or is queued

        runs = http.get("/dashboard/api/runs", params={"status": "error"}).json()
        assert {r["instance"] for r in runs} == {"A", "B"} and all(r["kind"] == "update" for r in runs)
        assert http.get("/dashboard/api/runs", params={"status": "bad"}).status_code == 422
        stats = {(s["component"], s["kind"]) for s in http.get("/dashboard/api/stats").json()}
        assert ("Notes", "update") in stats and ("Other", "serve") in stats
        timeline = http.get("/dashboard/api/timeline", params={"window_s": 600}).json()
        assert len(timeline) in (11, 12) and sum(b["serves"] for b in timeline) == 5
        too_many = http.get("/dashboard/api/timeline", params={"window_s": 86_400, "bucket_s": 1})
        assert too_many.status_code == 422 and "at most 1440" in too_many.json()["message"]


def test_without_credentials_every_data_route_is_401(secured: TestClient) -> None:
    for path in ("overview", "components/Notes", "components/Notes/instances/A", "queue", "runs", "stats", "timeline"):
        assert secured.get(f"/dashboard/api/{path}").status_code == 401, path
    assert secured.post("/dashboard/api/components/Notes/instances/A/failures/1/retry").status_code == 401
    assert secured.get("/dashboard/").status_code == 200
    session = secured.get("/dashboard/api/session").json()
    assert session == {
        "app": "dashapi",
        "auth_required": True,
        "authenticated": False,
        "principal": None,
        "error": None,
    }
    refused = secured.get("/dashboard/api/session", headers=bearer("tidal_0000_nope")).json()
    assert refused["authenticated"] is False and refused["error"] == "invalid or revoked API key"


def test_read_only_key_reads_but_cannot_retry_drop_or_roll_back(
    secured: TestClient, keys: KeyStore, app: tidal.App
) -> None:
    key, _ = keys.create("reader", Scope())
    who = secured.get("/dashboard/api/session", headers=bearer(key)).json()
    assert who["authenticated"] and who["principal"] == {"kind": "key", "name": "reader", "write": False}
    queue = secured.get("/dashboard/api/queue", headers=bearer(key)).json()
    op = queue["failures"][0]
    base = f"/dashboard/api/components/Notes/instances/{op['instance']}"
    for action in ("retry", "drop"):
        refused = secured.post(f"{base}/failures/{op['op_id']}/{action}", headers=bearer(key))
        assert refused.status_code == 403 and "may not write" in refused.json()["message"]
    rollback = secured.post(f"{base}/rollback", json={"key": "items", "version": 1}, headers=bearer(key))
    assert rollback.status_code == 403
    assert failed_instances(app) == ["A", "B"] and app.store.get_version("Notes", "A") == 2
    assert app.store.pending("Notes", "A") == 0 and app.store.pending("Notes", "B") == 0


def test_scoped_key_sees_only_what_it_reaches(secured: TestClient, keys: KeyStore) -> None:
    key, _ = keys.create("a", Scope(components=("Notes",), instances=("A",), write=True))
    overview = secured.get("/dashboard/api/overview", headers=bearer(key)).json()
    assert [c["name"] for c in overview["components"]] == ["Notes"]
    listed = secured.get("/dashboard/api/components/Notes", headers=bearer(key)).json()["instances"]
    assert [i["instance"] for i in listed] == ["A"]
    assert secured.get("/dashboard/api/components/Notes/instances/B", headers=bearer(key)).status_code == 403
    assert secured.get("/dashboard/api/components/Other", headers=bearer(key)).status_code == 403
    failures = secured.get("/dashboard/api/queue", headers=bearer(key)).json()["failures"]
    assert {f["instance"] for f in failures} == {"A"}
    b_op = secured.get(
        "/dashboard/api/components/Notes/instances/A", headers=bearer(key)
    ).json()  # A's own failures only
    assert {f["instance"] for f in b_op["failures"]} == {"A"}
    refused = secured.post("/dashboard/api/components/Notes/instances/B/failures/1/retry", headers=bearer(key))
    assert refused.status_code == 403
    runs = secured.get("/dashboard/api/runs", headers=bearer(key)).json()
    assert runs and {r["instance"] for r in runs} == {"A"}
    assert secured.get("/dashboard/api/runs", params={"component": "Other"}, headers=bearer(key)).status_code == 403
    assert {s["component"] for s in secured.get("/dashboard/api/stats", headers=bearer(key)).json()} == {"Notes"}
