"""Fuzz the API with schemathesis against its own OpenAPI document,
in-process: every operation, a bounded number of generated requests each
(deterministic), and not one 5xx answer.

The counts are written to docs/http.md by hand from this test's output
(``-s`` prints them)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from conftest import make_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

import tidal
from tidal.server import create_app

from .sample import Purchase, define

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
"""Generated requests per operation: valid ones, and ones that break the schema."""

pytestmark = pytest.mark.slow


@pytest.fixture
def fuzzed_app(tmp_path: Path) -> Iterator[tidal.App]:
    app = make_app("sqlite", tmp_path, name="fuzz")
    define(app, failing=False)  # the `boom` flow fails on purpose; it is tested elsewhere
    app.db.register(Purchase)
    yield app
    app.close()


def fuzz(strategy: st.SearchStrategy[schemathesis.Case], examples: int, failures: list[str]) -> int:
    """Send ``examples`` generated requests; record each 5xx in ``failures``."""
    sent = 0

    @settings(
        max_examples=examples, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        nonlocal sent
        response = case.call()
        sent += 1
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

    with contextlib.suppress(Unsatisfiable):  # negative mode: an operation without inputs has nothing to break
        check()
    return sent


def test_no_operation_answers_5xx(fuzzed_app: tidal.App) -> None:
    api = create_app(fuzzed_app, max_body_bytes=16 * 1024)
    schema = schemathesis.openapi.from_asgi("/openapi.json", api)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    failures: list[str] = []
    sent = dict.fromkeys(EXAMPLES, 0)
    for operation in operations:
        for mode, examples in EXAMPLES.items():
            sent[mode] += fuzz(operation.as_strategy(generation_mode=mode), examples, failures)
    counts = ", ".join(f"{n} {mode.value}" for mode, n in sent.items())
    print(f"\nschemathesis: {len(operations)} operations, requests: {counts}; {len(failures)} answered 5xx")
    assert not failures, "\n".join(failures[:10])
