"""Database: relations in SQL (SQLite by default, PostgreSQL at scale).

Every write is one transaction: the rows, and, for relations that have
triggers, one row per change in ``tidal_changes`` (an outbox). Update ops are
queued from that outbox afterwards, so a crash between the write and the
queueing delays a trigger but never loses it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.pool import StaticPool

from ..exceptions import ConfigError, RecordNotFoundError, RecordValidationError, SchemaError
from .record import Record, utcnow
from .rows import Rows
from .schema import Column, check_compatible, columns_for, kind_of_db_type, table_for, to_row

R = TypeVar("R", bound=Record)
Event = Literal["insert", "update", "delete"]
EVENTS: tuple[Event, ...] = ("insert", "update", "delete")

CHANGES_TABLE = "tidal_changes"


@dataclass(frozen=True)
class Change:
    """One change of a watched relation, as recorded in the outbox."""

    id: int
    token: str
    """Unique across databases and time: names the change in dedupe keys."""
    relation: str
    event: Event
    record_id: str
    record: dict[str, Any]
    old: dict[str, Any] | None


@dataclass
class _Relation:
    cls: type[Record]
    table: sa.Table
    columns: list[Column]


def engine_url(url: str) -> str:
    """Accept ``postgresql://`` for PostgreSQL with the psycopg 3 driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Database:
    """Typed relations in one SQL database (a SQLAlchemy URL)."""

    def __init__(self, url: str) -> None:
        self.url = engine_url(url)
        try:
            if self.url in ("sqlite://", "sqlite:///:memory:"):
                # One shared in-memory database for every thread of the process.
                self.engine = sa.create_engine(
                    "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
                )
            else:
                self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ConfigError(f"cannot open relations database {url!r}: {exc}") from exc
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._metadata = sa.MetaData()
        self._relations: dict[str, _Relation] = {}
        self._watched: set[str] = set()
        self._lock = threading.Lock()
        self.on_change: list[Callable[[], None]] = []
        self._changes = sa.Table(
            CHANGES_TABLE,
            self._metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
            sa.Column("token", sa.String(32), nullable=False),
            sa.Column("relation", sa.String(255), nullable=False),
            sa.Column("event", sa.String(16), nullable=False),
            sa.Column("record_id", sa.String(255), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("created_at", sa.Double(), nullable=False),
            sqlite_autoincrement=True,
        )
        self._changes.create(self.engine, checkfirst=True)

    # -- schema -----------------------------------------------------------

    def register(self, cls: type[Record]) -> None:
        """Create ``cls``'s table, or adapt an existing one: new optional
        fields become new columns; anything else incompatible raises
        SchemaError saying what to do."""
        if not (isinstance(cls, type) and issubclass(cls, Record)):
            raise TypeError(f"relations are Record subclasses, got {cls!r}")
        name = cls.relation()
        with self._lock:
            known = self._relations.get(name)
            if known is not None and known.cls is cls:
                return
            if known is not None:
                self._metadata.remove(known.table)
            table = table_for(cls, self._metadata)
            inspector = sa.inspect(self.engine)
            if inspector.has_table(name):
                existing = {
                    c["name"]: (kind_of_db_type(c["type"]), bool(c["nullable"])) for c in inspector.get_columns(name)
                }
                with self.engine.connect() as conn:
                    has_rows = (
                        conn.execute(sa.select(sa.literal(1)).select_from(sa.table(name)).limit(1)).first() is not None
                    )
                for col in check_compatible(cls, existing, has_rows):
                    ddl = sa.schema.CreateColumn(table.c[col.name]).compile(dialect=self.engine.dialect)
                    with self.engine.begin() as conn:
                        conn.execute(sa.text(f'ALTER TABLE "{name}" ADD COLUMN {ddl}'))
            else:
                table.create(self.engine)
            self._relations[name] = _Relation(cls, table, columns_for(cls))

    def watch(self, cls: type[Record]) -> None:
        """Record changes of ``cls`` in the outbox (it has triggers)."""
        self.register(cls)
        self._watched.add(cls.relation())

    def relation(self, cls: type[Record]) -> _Relation:
        rel = self._relations.get(cls.relation())
        if rel is None or rel.cls is not cls:
            self.register(cls)
            rel = self._relations[cls.relation()]
        return rel

    def relation_class(self, name: str) -> type[Record] | None:
        """The Record class registered for a table name."""
        rel = self._relations.get(name)
        return rel.cls if rel else None

    # -- validation -------------------------------------------------------

    @staticmethod
    def validate(items: Iterable[Record | Mapping[str, Any]], cls: type[R] | None = None) -> list[Record]:
        """Records from instances or dicts (dicts need ``cls``); all problems
        of all items reported in one RecordValidationError."""
        records: list[Record] = []
        errors: list[tuple[int, str, str]] = []
        for index, item in enumerate(items):
            if isinstance(item, Record):
                if cls is not None and not isinstance(item, cls):
                    errors.append((index, "", f"expected a {cls.__name__}, got {type(item).__name__}"))
                    continue
                records.append(item)
                continue
            if cls is None:
                raise TypeError(f"item {index} is a {type(item).__name__}; pass relation=RecordClass to insert dicts")
            try:
                records.append(cls.model_validate(item))
            except ValidationError as exc:
                for err in exc.errors():
                    field = ".".join(str(p) for p in err["loc"]) or "(record)"
                    errors.append((index, field, f"{err['msg']} (got {err.get('input')!r:.60})"))
        if errors:
            first = errors[0]
            where = f"record {first[0]}" + (f", field {first[1]!r}" if first[1] else "")
            raise RecordValidationError(
                f"{len(errors)} problem(s) in the batch, nothing was written; {where}: {first[2]}", errors
            )
        return records

    # -- writes -----------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    def _outbox(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        if rows:
            conn.execute(self._changes.insert(), rows)

    def _change_row(self, relation: str, event: Event, record: Record, old: Record | None) -> dict[str, Any]:
        payload = {"record": record.model_dump(mode="json"), "old": old.model_dump(mode="json") if old else None}
        return {
            "token": uuid.uuid4().hex,
            "relation": relation,
            "event": event,
            "record_id": record.id,
            "payload": orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            "created_at": time.time(),
        }

    def insert_many(self, records: Sequence[Record], *, upsert: bool = False) -> list[Record]:
        """Store records in one transaction; returns them as stored (with
        timestamps). Without ``upsert`` an existing id is an error."""
        now = utcnow()
        stored: list[Record] = []
        changes: list[dict[str, Any]] = []
        with self._tx() as conn:
            for record in records:
                rel = self.relation(type(record))
                old = None
                if upsert:
                    old = self._get(conn, rel, record.id)
                created = old.created_at if old is not None else (record.created_at or now)
                new = record.model_copy(update={"created_at": created, "updated_at": now})
                row = to_row(new, rel.columns)
                try:
                    if old is None:
                        conn.execute(rel.table.insert(), row)
                    else:
                        conn.execute(rel.table.update().where(rel.table.c.id == record.id), row)
                except sa.exc.IntegrityError as exc:
                    raise RecordValidationError(
                        f"relation {rel.cls.relation()!r}: a record with id {record.id!r} already exists; "
                        "nothing was written (use upsert or update to change it)",
                        [(len(stored), "id", "duplicate id")],
                    ) from exc
                stored.append(new)
                if rel.cls.relation() in self._watched:
                    changes.append(self._change_row(rel.cls.relation(), "update" if old else "insert", new, old))
            self._outbox(conn, changes)
        if changes:
            self._changed()
        return stored

    def update_many(self, records: Sequence[Record]) -> list[Record]:
        """Replace stored records (by id) in one transaction; a missing id is
        RecordNotFoundError and nothing is written."""
        now = utcnow()
        stored: list[Record] = []
        changes: list[dict[str, Any]] = []
        with self._tx() as conn:
            for record in records:
                rel = self.relation(type(record))
                old = self._get(conn, rel, record.id)
                if old is None:
                    raise RecordNotFoundError(
                        f"relation {rel.cls.relation()!r} has no record {record.id!r}; nothing was written"
                    )
                new = record.model_copy(update={"created_at": old.created_at, "updated_at": now})
                conn.execute(rel.table.update().where(rel.table.c.id == record.id), to_row(new, rel.columns))
                stored.append(new)
                if rel.cls.relation() in self._watched:
                    changes.append(self._change_row(rel.cls.relation(), "update", new, old))
            self._outbox(conn, changes)
        if changes:
            self._changed()
        return stored

    def delete_many(self, cls: type[R], ids: Sequence[str]) -> list[R]:
        """Delete records by id in one transaction; returns what was deleted.
        A missing id is RecordNotFoundError and nothing is deleted."""
        rel = self.relation(cls)
        deleted: list[R] = []
        changes: list[dict[str, Any]] = []
        with self._tx() as conn:
            for record_id in ids:
                old = self._get(conn, rel, record_id)
                if old is None:
                    raise RecordNotFoundError(
                        f"relation {cls.relation()!r} has no record {record_id!r}; nothing was deleted"
                    )
                conn.execute(rel.table.delete().where(rel.table.c.id == record_id))
                deleted.append(old)  # type: ignore[arg-type]
                if cls.relation() in self._watched:
                    changes.append(self._change_row(cls.relation(), "delete", old, None))
            self._outbox(conn, changes)
        if changes:
            self._changed()
        return deleted

    # -- reads ------------------------------------------------------------

    def _get(self, conn: sa.Connection, rel: _Relation, record_id: str) -> Record | None:
        row = conn.execute(sa.select(rel.table).where(rel.table.c.id == record_id)).mappings().first()
        return None if row is None else rel.cls.model_validate(dict(row))

    def get(self, cls: type[R], record_id: str) -> R | None:
        """The record with this id, or None."""
        rel = self.relation(cls)
        with self.engine.connect() as conn:
            return self._get(conn, rel, record_id)  # type: ignore[return-value]

    def query(
        self,
        cls: type[R],
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | Sequence[str] = "created_at",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[R]:
        """Records whose fields equal ``where``'s values, ordered by field
        names (prefix ``-`` for descending)."""
        rel = self.relation(cls)
        table = rel.table
        stmt = sa.select(table)
        for field, value in (where or {}).items():
            if field not in table.c:
                raise SchemaError(
                    f"relation {cls.relation()!r} has no field {field!r} (fields: {list(table.c.keys())})"
                )
            column = next(c for c in rel.columns if c.name == field)
            stmt = stmt.where(table.c[field].is_(None) if value is None else table.c[field] == column.to_db(value))
        for key in [order_by] if isinstance(order_by, str) else order_by:
            name = key.lstrip("-")
            if name not in table.c:
                raise SchemaError(f"relation {cls.relation()!r} has no field {name!r} to order by")
            stmt = stmt.order_by(table.c[name].desc() if key.startswith("-") else table.c[name].asc())
        stmt = stmt.order_by(table.c.id).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [cls.model_validate(dict(r)) for r in rows]

    def count(self, cls: type[Record]) -> int:
        rel = self.relation(cls)
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(rel.table)).scalar_one())

    def sql(self, query: str, params: Mapping[str, Any] | None = None, *, write: bool = False) -> Rows:
        """Run SQL with bound parameters (``:name`` placeholders) and return
        its rows. Read-only unless ``write=True`` (writes made this way
        bypass validation and triggers)."""
        if not isinstance(query, str):
            raise TypeError("query must be a SQL string with :name placeholders")
        if params is not None and not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict of bound parameters, got {type(params).__name__}")
        stmt = sa.text(query)
        with self.engine.connect() as conn:
            if not write:
                _read_only(conn, self.dialect)
            try:
                result = conn.execute(stmt, dict(params or {}))
                rows = (
                    Rows(list(result.keys()), [tuple(r) for r in result.fetchall()])
                    if result.returns_rows
                    else Rows([], [])
                )
                if write:
                    conn.commit()
            finally:
                if not write:
                    _read_write(conn, self.dialect)
        return rows

    # -- outbox -----------------------------------------------------------

    def pending_changes(self, limit: int = 500) -> list[Change]:
        """The oldest changes not yet handed to the queue."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(self._changes).order_by(self._changes.c.id).limit(limit)).all()
        out = []
        for row in rows:
            payload = orjson.loads(row.payload)
            out.append(
                Change(row.id, row.token, row.relation, row.event, row.record_id, payload["record"], payload["old"])
            )
        return out

    def ack_changes(self, ids: Sequence[int]) -> None:
        """Forget changes whose ops are queued."""
        if ids:
            with self._tx() as conn:
                conn.execute(self._changes.delete().where(self._changes.c.id.in_(list(ids))))

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _read_only(conn: sa.Connection, dialect: str) -> None:
    if dialect == "sqlite":
        conn.exec_driver_sql("PRAGMA query_only=ON")
    elif dialect == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")


def _read_write(conn: sa.Connection, dialect: str) -> None:
    if dialect == "sqlite":
        conn.rollback()
        conn.exec_driver_sql("PRAGMA query_only=OFF")
    conn.rollback()
