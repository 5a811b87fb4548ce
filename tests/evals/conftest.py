"""Fixtures of the evaluation tests: an app, a model client on the stand-in
server (the fixtures of tests/models), and a small assistant component."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from models import conftest as models_fixtures

import tidal
from tidal import models
from tidal.config import Settings

# The stand-in server's fixtures, shared with tests/models.
standin_server = models_fixtures.standin_server
standin = models_fixtures.standin


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tidal.App]:
    a = tidal.App(
        "evals-test",
        store=f"sqlite:///{tmp_path}/store.db",
        home=tmp_path / "home",
        settings=Settings(lease_seconds=2.0, sweep_seconds=0.2),
    )
    yield a
    a.close()


@pytest.fixture
def llm(standin: Any, app: tidal.App) -> Iterator[Any]:
    model = models.connect(standin.base_url + "#stand-in", app=app, backoff=0.01, max_backoff=0.05, timeout=5)
    yield model
    model.close()


def assistant(app: tidal.App, answers: dict[str, str], name: str = "Assistant") -> tidal.Component:
    """A component whose ``ask`` flow answers ``answers[question]`` (or
    "I don't know"), in the instance's style."""
    comp = app.component(name)

    @comp.init_state
    def setup() -> dict[str, Any]:
        return {"asked": 0}

    @comp.serve("ask")
    def ask(state: Any, props: Any) -> str:
        return answers.get(props["question"], "I don't know")

    @comp.update("ask")
    def count(state: Any, props: Any) -> dict[str, Any]:
        return {"asked": state["asked"] + 1}

    return comp
