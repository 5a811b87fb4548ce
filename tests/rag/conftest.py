"""Fixtures of the retrieval tests: an app on SQLite, a source relation,
and embedders that count what they embed (tests/rag/common.py); the
stand-in model server (tests/models) and apps whose relations live in
SQLite or a real PostgreSQL (tests/relations), re-exported here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from models.conftest import standin, standin_server  # noqa: F401
from relations.conftest import backend, db_app, open_app, pg_relations_db, pg_schema_url  # noqa: F401

import tidal

from .common import CountingEmbedder, Doc, make_app  # noqa: F401


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tidal.App]:
    a = make_app(tmp_path)
    yield a
    a.close()


@pytest.fixture
def emb() -> CountingEmbedder:
    return CountingEmbedder()
