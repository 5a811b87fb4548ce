"""Oversized and rejected requests: 413 on the bytes received (declared or
chunked), and nothing of a rejected request reaches state or relations."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient

import tidal

from .sample import Purchase

RECOMMEND = "/components/Prefs/instances/u1/flows/recommend"


def test_declared_body_over_the_limit_is_413(http: TestClient, sample_app: tidal.App) -> None:
    big = {"props": {"event": "x" * 100, "pad": "y" * 70_000}}
    answer = http.post(RECOMMEND, json=big)
    assert answer.status_code == 413
    assert answer.json()["error"] == "payload_too_large" and answer.json()["limit"] == 64 * 1024
    assert sample_app.store.get_version("Prefs", "u1") is None


def test_chunked_body_over_the_limit_is_413(http: TestClient, sample_app: tidal.App) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"user": "u1", "item": "x", "price": 1, "pad": "'
        for _ in range(100):
            yield b"z" * 1024
        yield b'"}'

    answer = http.post("/relations/purchase", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert sample_app.query(Purchase) == []


def test_chunked_body_under_the_limit_goes_through(http: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"user": "u1", '
        yield b'"item": "x", "price": 1}'

    answer = http.post("/relations/purchase", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 201


def test_rejected_requests_leave_state_and_relations_untouched(http: TestClient, sample_app: tidal.App) -> None:
    http.post(RECOMMEND, json={"props": {"event": "first"}, "flush_update": True})
    http.post("/relations/purchase", json={"user": "u1", "item": "kept", "price": 1})
    prefs = sample_app.components["Prefs"]("u1")
    prefs.flush_update()
    before = (prefs.get_version(), prefs.read_state("events"), prefs.read_state("items"))
    purchases = [p.id for p in sample_app.query(Purchase)]
    rejected = [
        http.post(RECOMMEND, json={"props": {"event": 5}, "flush_update": True}),  # 422: props
        http.post(RECOMMEND, json={"props": {"event": "x", "limit": 0}}),  # 422: props
        http.post(RECOMMEND, content=b"{not json", headers={"content-type": "application/json"}),  # 422
        http.post(RECOMMEND, json={"props": {"event": "x" * 70_000}}),  # 413
        http.post("/components/Prefs/instances/u1/flows/nope", json={"props": {"event": "x"}}),  # 404
        http.post("/relations/purchase/batch", json=[{"user": "u1", "item": "ok", "price": 1}, {"user": "u1"}]),
        http.post("/relations/purchase", json={"user": "u1", "item": "y" * 70_000, "price": 1}),  # 413
    ]
    assert [r.status_code for r in rejected] == [422, 422, 422, 413, 404, 422, 413]
    prefs.flush_update()
    assert (prefs.get_version(), prefs.read_state("events"), prefs.read_state("items")) == before
    assert [p.id for p in sample_app.query(Purchase)] == purchases
    assert sample_app.store.pending("Prefs", "u1") == 0


def test_body_limit_counts_chunks_without_a_declared_length() -> None:
    import asyncio

    from tidal.server.limits import BodyLimit

    reached: list[bytes] = []

    async def app(scope: object, receive: object, send: object) -> None:  # pragma: no cover - must not run
        reached.append(b"called")

    async def run(chunks: list[bytes]) -> list[dict[str, object]]:
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return messages.pop(0)

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"transfer-encoding", b"chunked")]}
        await BodyLimit(app, max_bytes=10)(scope, receive, send)  # type: ignore[arg-type]
        return sent

    sent = asyncio.run(run([b"12345", b"67890", b"1"]))
    assert sent[0]["status"] == 413 and reached == []
    assert asyncio.run(run([b"12345", b"67890"])) == [] and reached == [b"called"]
