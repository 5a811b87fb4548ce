"""Fixtures of the rag tests: the stand-in model server (tests/models) and
an app whose relations live in SQLite or in a real PostgreSQL
(tests/relations), re-exported here."""

from __future__ import annotations

from models.conftest import standin, standin_server
from relations.conftest import backend, db_app, open_app, pg_relations_db, pg_schema_url

__all__ = ["backend", "db_app", "open_app", "pg_relations_db", "pg_schema_url", "standin", "standin_server"]
