"""API keys, stored hashed in the app's database.

A key reads ``tidal_<id>_<secret>``: the id is public (it names the key in
``tidal keys list`` and finds its row), the secret is 256 random bits. Only
the SHA-256 of the whole key is stored, so a copy of the database gives no
usable key; checking compares digests in constant time.

Table ``tidal_api_keys``: id (primary key), name, digest, scope (JSON: see
:class:`tidal.server.scopes.Scope`), created_at, revoked_at (NULL while valid).

A key found valid is remembered for ``cache_seconds`` (5 s by default), keyed
by its digest, so that a server answers repeat callers without a database
read per request. Revocation is still honoured: revoking through any
KeyStore of this process forgets that key in every KeyStore at once; a
revocation made by another process (``tidal keys revoke``) takes effect here
within ``cache_seconds``. Keys that fail are never remembered (each such
request reads the table, as before).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import weakref
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
DEFAULT_CACHE_SECONDS = 5.0
"""How long a key found valid is trusted without reading the table again."""
CACHE_MAX = 10_000
"""Most keys one KeyStore remembers; past it, the oldest are forgotten."""

_stores: weakref.WeakSet[KeyStore] = weakref.WeakSet()
_stores_lock = threading.Lock()


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

    def __init__(self, db: Database, *, cache_seconds: float = DEFAULT_CACHE_SECONDS) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKey]] = {}
        """digest of a key -> (monotonic deadline, its record), for keys found valid."""
        self._forgotten = 0
        """Counts :meth:`forget` calls: a verdict read before one is not cached after it."""
        with _stores_lock:
            _stores.add(self)
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
        _forget(key_id)  # before answering: no request after this one is let in by a cache
        if row is None:
            raise RecordNotFoundError(f"no API key {key_id!r}; see `tidal keys list`")
        del done
        return self._record(row)

    def cached(self, key: str) -> ApiKey | None:
        """The record of ``key`` if it was found valid less than
        ``cache_seconds`` ago (and not revoked in this process since), else
        None: then :meth:`verify` must decide. Reads no database."""
        hit = self._cache.get(_digest(key))
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            self._cache.pop(_digest(key), None)
            return None
        return hit[1]

    def verify(self, key: str) -> ApiKey | None:
        """The active key matching ``key``, else None (unknown, wrong or
        revoked). Answers from the cache when it can (see :meth:`cached`)."""
        key_id = _parse(key)
        if key_id is None:
            return None
        record = self.cached(key)
        if record is not None:
            return record
        digest = _digest(key)
        forgotten = self._forgotten
        with self.db.connect() as conn:
            row = conn.execute(sa.select(self.table).where(self.table.c.id == key_id)).mappings().first()
        if row is None or not hmac.compare_digest(row["digest"], digest):
            return None
        record = self._record(row)
        if not record.active:
            return None
        if self.cache_seconds > 0 and forgotten == self._forgotten:
            if len(self._cache) >= CACHE_MAX:
                self._cache.pop(next(iter(self._cache)), None)
            self._cache[digest] = (time.monotonic() + self.cache_seconds, record)
        return record

    def forget(self, key_id: str | None = None) -> None:
        """Drop cached verdicts: of the key ``key_id``, or of every key."""
        self._forgotten += 1
        if key_id is None:
            self._cache.clear()
            return
        for digest, (_, record) in list(self._cache.items()):
            if record.id == key_id:
                self._cache.pop(digest, None)

    @staticmethod
    def _record(row: sa.RowMapping) -> ApiKey:
        return ApiKey(
            id=row["id"],
            name=row["name"],
            scope=Scope.from_dict(json.loads(row["scope"])),
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )


def _forget(key_id: str) -> None:
    """Forget ``key_id`` in every KeyStore of this process (it was revoked)."""
    with _stores_lock:
        stores = list(_stores)
    for store in stores:
        store.forget(key_id)
