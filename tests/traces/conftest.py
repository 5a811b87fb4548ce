"""The trace tests' receiver (a real Arize Phoenix, ``phoenix``) and the
stand-in model server (``standin``, from tests/models)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from models.conftest import standin, standin_server  # noqa: F401 - fixtures used by the tests here
from phoenix_server import PhoenixServer, start_phoenix


@pytest.fixture(scope="session")
def phoenix() -> Iterator[PhoenixServer]:
    """Phoenix for the session, on free loopback ports."""
    server = start_phoenix()
    yield server
    server.stop()


@pytest.fixture
def project() -> str:
    """A Phoenix project of the test's own (``openinference.project.name``)."""
    return f"tidal-{uuid.uuid4().hex[:10]}"
