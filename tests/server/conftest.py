"""Fixtures of the HTTP API tests: the sample app on a fresh store, its API
and an in-process client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_app
from fastapi import FastAPI
from fastapi.testclient import TestClient

import tidal
from tidal.server import create_app

from .sample import Purchase, define


@pytest.fixture
def sample_app(tmp_path: Path) -> Iterator[tidal.App]:
    app = make_app("sqlite", tmp_path, name="served")
    define(app)
    app.db.register(Purchase)
    yield app
    app.close()


@pytest.fixture
def api(sample_app: tidal.App) -> FastAPI:
    return create_app(sample_app, max_body_bytes=64 * 1024)


@pytest.fixture
def http(api: FastAPI) -> Iterator[TestClient]:
    with TestClient(api) as client:
        yield client
