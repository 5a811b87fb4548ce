"""API keys, stored hashed in the app's database.

A key reads ``tidal_<id>_<secret>``: the id is public (it names the key in
``tidal keys list`` and finds its row), the secret is 256 random bits. Only
the SHA-256 of the whole key is stored, so a copy of the database gives no
usable key; checking compares digests in constant time.

Table ``tidal_api_keys``: id (primary key), name, digest, scope (JSON: see
:class:`tidal.server.scopes.Scope`), created_at, revoked_at (NULL while valid).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..exceptions import RecordNotFoundError
from .scopes import Scope

if TYPE_CHECKING:
    from ..relations import Database

TABLE = "tidal_api_keys"
PREFIX = "tidal_"


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never its secret)."""

    id: str
    name: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope.as_dict(),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _parse(key: str) -> str | None:
    """The id part of a well-formed key, else None."""
    if not key.startswith(PREFIX):
        return None
    key_id, sep, secret = key[len(PREFIX) :].partition("_")
    return key_id if sep and key_id and secret else None


class KeyStore:
    """The API keys of one app, in its relations database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        metadata = sa.MetaData()
        self.table = sa.Table(
            TABLE,
            metadata,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("digest", sa.String(64), nullable=False),
            sa.Column("scope", sa.Text, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        )
        with db.begin() as conn:
            metadata.create_all(conn, checkfirst=True)

    def create(self, name: str, scope: Scope) -> tuple[str, ApiKey]:
        """Make a key; returns the key itself (shown once, never stored) and its record."""
        key_id = secrets.token_hex(6)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            conn.execute(
                self.table.insert(),
                {
                    "id": key_id,
                    "name": name,
                    "digest": _digest(key),
                    "scope": json.dumps(scope.as_dict()),
                    "created_at": now,
                    "revoked_at": None,
                },
            )
        return key, ApiKey(key_id, name, scope, now, None)

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(self.table).order_by(self.table.c.created_at)).mappings().all()
        return [self._record(r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id (or by the whole key); RecordNotFoundError if unknown."""
        key_id = _parse(key_id) or key_id
        with self.db.begin() as conn:
            done = conn.execute(
                self.table.update()
                .where(self.table.c.id == key_id, self.table.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            row = conn.execute(sa.select(self.table).where(self.table.c.id == key_id)).mappings().first()
        if row is None:
            raise RecordNotFoundError(f"no API key {key_id!r}; see `tidal keys list`")
        del done
        return self._record(row)

    def verify(self, key: str) -> ApiKey | None:
        """The active key matching ``key``, else None (unknown, wrong or revoked)."""
        key_id = _parse(key)
        if key_id is None:
            return None
        with self.db.connect() as conn:
            row = conn.execute(sa.select(self.table).where(self.table.c.id == key_id)).mappings().first()
        if row is None or not hmac.compare_digest(row["digest"], _digest(key)):
            return None
        record = self._record(row)
        return record if record.active else None

    @staticmethod
    def _record(row: sa.RowMapping) -> ApiKey:
        return ApiKey(
            id=row["id"],
            name=row["name"],
            scope=Scope.from_dict(json.loads(row["scope"])),
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )
