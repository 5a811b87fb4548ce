"""Running flows over HTTP: results, run ids, versions, options, streams,
typed and Motion-style props, and errors that name what was wrong."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

import tidal
from tidal.server import create_app

from .sample import define

RECOMMEND = "/components/Prefs/instances/u1/flows/recommend"


def test_run_returns_result_run_id_and_version(http: TestClient, sample_app: tidal.App) -> None:
    answer = http.post(RECOMMEND, json={"props": {"event": "hiking"}, "flush_update": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"] == {"event": "hiking", "seen": 0, "limit": 3}
    assert body["version"] == 2  # init_state, then this run's update (flushed)
    assert sample_app.runlog is not None
    sample_app.runlog.flush()
    run = sample_app.get(tidal.Run, body["run_id"])
    assert run is not None and (run.component, run.instance, run.flow) == ("Prefs", "u1", "recommend")
    again = http.post(RECOMMEND, json={"props": {"event": "surf", "limit": 5}}).json()
    assert again["result"] == {"event": "surf", "seen": 1, "limit": 5}
    assert again["run_id"] != body["run_id"]
    assert sample_app.components["Prefs"]("u1").read_state("events")[:1] == ["hiking"]


def test_force_refresh_sees_queued_updates(http: TestClient) -> None:
    http.post(RECOMMEND, json={"props": {"event": "a"}})
    seen = http.post(RECOMMEND, json={"props": {"event": "b"}, "force_refresh": True}).json()["result"]["seen"]
    assert seen == 1


def test_ignore_cache_recomputes(tmp_path: object) -> None:
    app = tidal.App("cached", store="memory://")
    calls: list[int] = []
    comp = app.component("C", cache_ttl=60)

    @comp.serve("f")
    def f(state: object, props: object) -> int:
        calls.append(1)
        return len(calls)

    with TestClient(create_app(app)) as http:
        path = "/components/C/instances/x/flows/f"
        assert http.post(path, json={}).json()["result"] == 1
        assert http.post(path, json={}).json()["result"] == 1  # cached
        assert http.post(path, json={"ignore_cache": True}).json()["result"] == 2
    app.close()


def test_typed_props_are_checked_and_named(http: TestClient, sample_app: tidal.App) -> None:
    bad = http.post(RECOMMEND, json={"props": {"event": "x", "limit": 99}})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "props", "limit"]
    assert "props.limit" in bad.json()["message"]
    missing = http.post(RECOMMEND, json={"props": {}})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "props", "event"]
    unknown_option = http.post(RECOMMEND, json={"props": {"event": "x"}, "flush": True})
    assert unknown_option.status_code == 422 and unknown_option.json()["detail"][0]["loc"] == ["body", "flush"]
    assert sample_app.store.get_version("Prefs", "u1") is None  # nothing was created


def test_typeddict_annotation_declares_props(http: TestClient) -> None:
    path = "/components/Echo/instances/e/flows/count"
    assert http.post(path, json={"props": {"n": 3}}).json()["result"] == [0, 1, 2]
    bad = http.post(path, json={"props": {"n": 51}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "props", "n"]


def test_motion_style_props_accept_any_object(http: TestClient) -> None:
    props = {"a": [1, 2], "b": {"c": None}, "d": "é"}
    answer = http.post("/components/Echo/instances/e/flows/echo", json={"props": props})
    assert answer.json()["result"] == props
    assert http.post("/components/Echo/instances/e/flows/echo").json()["result"] == {}  # no body: no props
    not_object = http.post("/components/Echo/instances/e/flows/echo", json={"props": [1]})
    assert not_object.status_code == 422 and not_object.json()["detail"][0]["loc"] == ["body", "props"]


def test_a_prop_the_op_needs_but_did_not_get_is_422(http: TestClient) -> None:
    answer = http.post("/components/Echo/instances/e/flows/need", json={"props": {}})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "props", "q"]


def test_a_failing_op_is_500_with_its_error(http: TestClient) -> None:
    answer = http.post("/components/Echo/instances/e/flows/boom", json={})
    assert answer.status_code == 500
    assert answer.json()["error"] == "op_failed" and "the op broke" in answer.json()["message"]


def test_async_serve_op(http: TestClient) -> None:
    answer = http.post("/components/Echo/instances/e/flows/aecho", json={"props": {"k": 1}}).json()
    assert answer["result"] == {"async": True, "k": 1} and answer["run_id"]


@pytest.mark.parametrize(
    "flow,props,items", [("count", {"n": 3}, [0, 1, 2]), ("acount", {"n": 2}, [{"i": 0}, {"i": 1}])]
)
def test_stream_generator_ops(http: TestClient, flow: str, props: dict[str, int], items: list[object]) -> None:
    answer = http.post(f"/components/Echo/instances/e/flows/{flow}/stream", json={"props": props})
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in answer.text.splitlines()]
    assert [line["item"] for line in lines[:-1]] == items
    assert lines[-1]["done"] is True and lines[-1]["run_id"] and lines[-1]["version"] == 1


def test_stream_reports_a_failure_midway(http: TestClient) -> None:
    lines = http.post("/components/Echo/instances/e/flows/boom/stream", json={}).text.splitlines()
    assert orjson.loads(lines[-1])["error"] == "op_failed"


def test_unknown_names_are_404_listing_the_known_ones(http: TestClient) -> None:
    comp = http.post("/components/Nope/instances/u1/flows/recommend", json={})
    assert comp.status_code == 404 and comp.json()["known"] == ["Echo", "Prefs"]
    flow = http.post("/components/Prefs/instances/u1/flows/nope", json={})
    assert flow.status_code == 404 and flow.json()["known"] == ["recommend"]
    assert "known flows" in flow.json()["message"]
    trigger_only = http.post("/components/Prefs/instances/u1/flows/bought", json={})
    assert trigger_only.status_code == 404 and "relation changes or a schedule only" in trigger_only.json()["message"]
    stream = http.post("/components/Prefs/instances/u1/flows/nope/stream", json={})
    assert stream.status_code == 404


def test_running_a_flow_creates_the_instance_but_reading_state_does_not(
    http: TestClient, sample_app: tidal.App
) -> None:
    missing = http.get("/components/Prefs/instances/new/state")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_instance"
    assert sample_app.store.get_version("Prefs", "new") is None
    http.post("/components/Prefs/instances/new/flows/recommend", json={"props": {"event": "x"}})
    assert http.get("/components/Prefs/instances/new/state").status_code == 200


def test_create_instances_off_makes_unknown_instances_404(sample_app: tidal.App) -> None:
    sample_app.components["Prefs"]("known")
    with TestClient(create_app(sample_app, create_instances=False)) as http:
        answer = http.post("/components/Prefs/instances/other/flows/recommend", json={"props": {"event": "x"}})
        assert answer.status_code == 404 and answer.json()["known"] == ["known"]
        assert (
            http.post("/components/Prefs/instances/known/flows/recommend", json={"props": {"event": "x"}}).status_code
            == 200
        )
    assert sample_app.store.get_version("Prefs", "other") is None


def test_flows_added_after_the_api_was_made_run_through_the_generic_route(sample_app: tidal.App) -> None:
    with TestClient(create_app(sample_app)) as http:
        late = sample_app.component("Late")

        @late.serve("hello")
        def hello(state: object, props: object) -> str:
            return "hi"

        assert http.post("/components/Late/instances/x/flows/hello", json={}).json()["result"] == "hi"


def test_state_shows_json_values_and_placeholders(http: TestClient) -> None:
    http.post(RECOMMEND, json={"props": {"event": "hiking"}, "flush_update": True})
    view = http.get("/components/Prefs/instances/u1/state").json()
    assert view["version"] == 2
    assert view["keys"]["events"] == {
        "type": "list",
        "bytes": view["keys"]["events"]["bytes"],
        "json_value": True,
        "value": ["hiking"],
    }
    blob = view["keys"]["blob"]
    assert blob["json_value"] is False and blob["value"] is None and blob["type"] == "Blob" and blob["bytes"] > 100
    only = http.get("/components/Prefs/instances/u1/state", params={"keys": ["items"]}).json()
    assert list(only["keys"]) == ["items"]


def test_components_and_instances_are_listed(http: TestClient) -> None:
    http.post(RECOMMEND, json={"props": {"event": "x"}, "flush_update": True})
    comps = {c["name"]: c for c in http.get("/components").json()}
    flows = {f["name"]: f for f in comps["Prefs"]["flows"]}
    assert flows["recommend"]["serve"] == "sync" and flows["recommend"]["updates"] == ["define.<locals>.remember"]
    assert flows["recommend"]["props_schema"]["required"] == ["event"]
    assert flows["bought"]["serve"] is None and comps["Prefs"]["triggers"] == ["purchase"]
    assert flows["bought"]["runnable"] is False and flows["recommend"]["runnable"] is True
    assert {f["name"]: f["props_schema"] for f in comps["Echo"]["flows"]}["echo"] is None
    listed = http.get("/components/Prefs/instances").json()
    assert listed["instances"] == [{"id": "u1", "version": 2}]


def test_openapi_documents_each_flows_props(http: TestClient) -> None:
    spec = http.get("/openapi.json").json()
    body = spec["paths"]["/components/Prefs/instances/{instance}/flows/recommend"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    props = spec["components"]["schemas"][ref]["properties"]["props"]
    schema = spec["components"]["schemas"][props["$ref"].rsplit("/", 1)[1]]
    assert schema["required"] == ["event"] and schema["properties"]["limit"]["maximum"] == 10
    echo = spec["paths"]["/components/Echo/instances/{instance}/flows/echo"]["post"]["requestBody"]
    echo_schema = spec["components"]["schemas"][echo["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert echo_schema["properties"]["props"]["type"] == "object"


def test_flush_update_without_updates_here_is_409(sample_app: tidal.App) -> None:
    with TestClient(create_app(sample_app, run_updates=False)) as http:
        answer = http.post(RECOMMEND, json={"props": {"event": "x"}, "flush_update": True})
        assert answer.status_code == 409 and "tidal worker" in answer.json()["message"]
        queued = http.post(RECOMMEND, json={"props": {"event": "x"}})
        assert queued.status_code == 200
    assert sample_app.store.pending("Prefs", "u1") == 1  # queued, left for a worker


def test_api_mounts_inside_another_app(sample_app: tidal.App) -> None:
    from fastapi import FastAPI

    outer = FastAPI()
    outer.mount("/tidal", create_app(sample_app))
    with TestClient(outer) as http:
        assert http.get("/tidal/healthz").json()["status"] == "ok"
        assert http.post("/tidal" + RECOMMEND, json={"props": {"event": "x"}}).json()["result"]["event"] == "x"


def test_run_validates_props_in_python_too(tmp_path: object) -> None:
    app = tidal.App("py", store="memory://")
    define(app)
    with pytest.raises(tidal.PropsValidationError, match="limit") as err:
        app.components["Prefs"]("u").run("recommend", props={"event": "x", "limit": 0})
    assert err.value.errors[0][0] == "limit"
    assert app.components["Prefs"]("u").run("recommend", props={"event": "x"})["limit"] == 3
    app.close()


def test_a_failing_update_with_flush_update_is_500_with_its_traceback() -> None:
    app = tidal.App("failing", store="memory://")
    comp = app.component("C")

    @comp.update("learn")
    def learn(state: object, props: object) -> dict[str, object]:
        raise ValueError("cannot learn that")

    with TestClient(create_app(app)) as http:
        answer = http.post("/components/C/instances/x/flows/learn", json={"flush_update": True})
        assert answer.status_code == 500 and answer.json()["error"] == "update_failed"
        assert "cannot learn that" in answer.json()["failures"][0]["error"]
        queued = http.post("/components/C/instances/x/flows/learn", json={})  # without waiting: queued, 200
        assert queued.status_code == 200 and queued.json()["result"] is None
    app.close()
