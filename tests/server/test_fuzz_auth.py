"""Fuzz the API with auth on (what ``tidal serve --api-key-required`` runs):
schemathesis against the app's own OpenAPI document, in-process, every
request carrying a valid API key of full scope. No answer may be a 5xx
other than the documented ones (docs/http.md, "Errors": 500 ``op_failed`` /
``update_failed``), every refusal must have the ``{error, message}`` body,
and none may be a 401 / 403 (the key reaches everything).

test_fuzz.py does the same without auth; this variant runs the auth
dependency on every route, with bodies the schema allows and bodies it does
not."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import make_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

import tidal
from tidal.server import Auth, KeyStore, Scope, create_app

from .sample import Purchase, define

EXAMPLES = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 4}
"""Generated requests per operation: fewer than test_fuzz.py's, this runs in seconds."""

DOCUMENTED_5XX = {(500, "op_failed"), (500, "update_failed")}
"""The 5xx answers docs/http.md lists (a serve or update op that raised)."""

OPEN = ("/healthz", "/readyz", "/openapi.json", "/docs", "/dashboard/api/session")
"""Routes open without credentials (probes, the API's description, the dashboard's login check)."""

pytestmark = pytest.mark.slow


@pytest.fixture
def fuzzed_app(tmp_path: Path) -> Iterator[tidal.App]:
    app = make_app("sqlite", tmp_path, name="fuzzauth")
    define(app, failing=False)
    app.db.register(Purchase)
    yield app
    app.close()


def error_shape(response: Any) -> str | None:
    """What is wrong with an error answer's body, or None if it is ``{error, message, ...}``."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict):
        return f"not an object: {body!r:.200}"
    if not isinstance(body.get("error"), str) or not body["error"]:
        return f"no 'error' code: {body!r:.200}"
    if not isinstance(body.get("message"), str) or not body["message"]:
        return f"no 'message': {body!r:.200}"
    return None


def fuzz(
    strategy: st.SearchStrategy[schemathesis.Case],
    examples: int,
    headers: dict[str, str],
    failures: list[str],
    statuses: dict[int, int],
) -> int:
    """Send ``examples`` generated requests with ``headers``; record what breaks a promise."""
    sent = 0

    @settings(
        max_examples=examples, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        nonlocal sent
        # The schema declares both credentials, so schemathesis makes up values
        # for them: replace those with the valid key, sent one way.
        kept = {k: v for k, v in (case.headers or {}).items() if k.lower() not in ("authorization", "x-api-key")}
        case.headers = {**kept, **headers}
        response = case.call()
        sent += 1
        status = response.status_code
        statuses[status] = statuses.get(status, 0) + 1
        where = f"{case.method} {case.formatted_path} -> {status}"
        if status < 400:
            return
        problem = error_shape(response)
        if problem is not None:
            failures.append(f"{where}: error body {problem}")
            return
        code = response.json()["error"]
        if status >= 500 and (status, code) not in DOCUMENTED_5XX:
            failures.append(f"{where} ({code}): {response.text[:300]}")
        if status in (401, 403):
            failures.append(f"{where}: a full-scope key was refused: {response.text[:300]}")

    with contextlib.suppress(Unsatisfiable):  # negative mode: an operation without inputs has nothing to break
        check()
    return sent


def test_with_auth_on_no_operation_answers_an_undocumented_5xx_and_every_error_has_its_shape(
    fuzzed_app: tidal.App,
) -> None:
    keys = KeyStore(fuzzed_app.db)
    key, _ = keys.create("fuzzer", Scope(write=True))  # every component, instance and relation
    api = create_app(fuzzed_app, auth=Auth(keys), max_body_bytes=16 * 1024)
    schema = schemathesis.openapi.from_asgi("/openapi.json", api)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    # Auth is on: the same operations without the key are refused, with the error shape.
    refused: list[str] = []
    checked = 0
    for operation in operations:
        if "{" in operation.path or operation.path in OPEN:
            continue  # path parameters to fill (the fuzzing below covers those), or open to all
        response = operation.Case().call()
        checked += 1
        if response.status_code != 401 or error_shape(response) is not None:
            refused.append(f"{operation.method.upper()} {operation.path} without a key -> {response.status_code}")
    assert not refused, "\n".join(refused)
    assert checked >= 10

    failures: list[str] = []
    statuses: dict[int, int] = {}
    sent = dict.fromkeys(EXAMPLES, 0)
    for header in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        for operation in operations:
            for mode, examples in EXAMPLES.items():
                sent[mode] += fuzz(operation.as_strategy(generation_mode=mode), examples, header, failures, statuses)
    counts = ", ".join(f"{n} {mode.value}" for mode, n in sent.items())
    shown = sorted(statuses.items())
    print(f"\nschemathesis with auth: {len(operations)} operations, requests: {counts}; statuses {shown}")
    assert not failures, "\n".join(failures[:10])
    assert sum(n for status, n in statuses.items() if status < 400) > 0  # the key did get requests through
