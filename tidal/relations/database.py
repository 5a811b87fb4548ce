"""Database: relations in SQL (SQLite by default, PostgreSQL at scale).

Every write is one transaction: the rows, and, for relations that have
triggers, one row per change in ``tidal_changes`` (an outbox). Update ops are
queued from that outbox afterwards, so a crash between the write and the
queueing delays a trigger but never loses it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from ..exceptions import (
    ConfigError,
    ReadOnlyError,
    RecordNotFoundError,
    SchemaError,
)
from .outbox import Change, Outbox
from .record import Record, utcnow
from .rows import Rows
from .schema import Column, check_compatible, columns_for, kind_of_db_type, table_for, to_row
from .validation import check_ids, check_where, is_read_only_violation, refused, validate

R = TypeVar("R", bound=Record)
Event = Literal["insert", "update", "delete"]
EVENTS: tuple[Event, ...] = ("insert", "update", "delete")


@dataclass
class Relation:
    cls: type[Record]
    table: sa.Table
    columns: list[Column]
    stuck_not_null: list[str] = dataclass_field(default_factory=list)
    """Stored NOT NULL columns that the class may leave empty (SQLite cannot
    relax them): what an insert refused by the table is explained with."""

    _fill: list[str] = dataclass_field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._fill = [c.name for c in self.columns if c.fills_null]

    def record(self, row: Mapping[Any, Any]) -> Record:
        """A stored row as a record; a NULL in a column added after the row
        was stored reads back as the field's default."""
        data = dict(row)
        for name in self._fill:
            if data.get(name, 0) is None:
                del data[name]
        return self.cls.model_validate(data)


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
                # One shared in-memory database for every thread of the process:
                # one connection, so its users take turns (see connect).
                self.engine = sa.create_engine(
                    "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
                )
                self._serial: threading.RLock | None = threading.RLock()
            else:
                self._serial = None
                self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ConfigError(f"cannot open relations database {url!r}: {exc}") from exc
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._metadata = sa.MetaData()
        self._relations: dict[str, Relation] = {}
        self._lock = threading.Lock()
        self.on_change: list[Callable[[], None]] = []
        self.outbox = Outbox(self._metadata, self.connect, self.begin)
        _databases.add(self)

    def _after_fork_in_child(self) -> None:
        """A forked child gets new locks (the parent's may be held by threads
        that are gone) and, on a file or server database, a new connection
        pool: connections must not cross a fork (SQLite's locks, a server's
        socket shared with the parent). The parent's pool is kept, never
        closed: closing its connections here would break them for the
        parent (PostgreSQL) or drop this process's file locks (SQLite). The
        shared in-memory database keeps its one connection: it is this
        process's own copy."""
        self._lock = threading.Lock()
        if self._serial is not None:
            self._serial = threading.RLock()
        else:
            _inherited_pools.append(self.engine.pool)
            self.engine.dispose(close=False)

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection; on the in-memory database, the only one, held by
        one thread at a time (interleaved transactions on one SQLite
        connection would commit or roll back each other's work). Code that
        reaches past the relation verbs uses this, not ``engine.connect()``."""
        with self._serial or nullcontext(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A connection in a transaction, committed at the end unless it
        raised; use it rather than ``engine.begin()`` (see ``connect``)."""
        with self._serial or nullcontext(), self.engine.begin() as conn:
            yield conn

    # -- schema -----------------------------------------------------------

    def register(self, cls: type[Record]) -> None:
        """Create ``cls``'s table, or adapt an existing one: new optional
        fields become new columns; anything else incompatible raises
        SchemaError saying what to do."""
        if not (isinstance(cls, type) and issubclass(cls, Record)):
            raise TypeError(f"relations are Record subclasses, got {cls!r}")
        name = cls.relation()
        with self._lock, self._serial or nullcontext():
            known = self._relations.get(name)
            if known is not None and known.cls is cls:
                return
            # A table object of its own: a class of the same relation can be
            # registered again (the code changed) without clashing.
            table = table_for(cls, sa.MetaData())
            inspector = sa.inspect(self.engine)
            stuck: list[str] = []
            if inspector.has_table(name):
                stuck = self._evolve(cls, table, inspector.get_columns(name))
            else:
                try:
                    with self.begin() as conn:
                        table.create(conn)
                except sa.exc.DBAPIError:
                    # Another process created it since we looked (several
                    # processes opening the database at once): adapt theirs.
                    inspector = sa.inspect(self.engine)
                    if not inspector.has_table(name):
                        raise
                    stuck = self._evolve(cls, table, inspector.get_columns(name))
            self._relations[name] = Relation(cls, table, columns_for(cls), stuck)

    def _evolve(self, cls: type[Record], table: sa.Table, reflected: list[Any]) -> list[str]:
        """Adapt an existing table to ``cls`` in one transaction; returns the
        NOT NULL columns that ``cls`` may leave empty and that this database
        cannot relax (SQLite)."""
        name = table.name
        existing = {c["name"]: (kind_of_db_type(c["type"]), bool(c["nullable"])) for c in reflected}
        with self.begin() as conn:
            has_rows = conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is not None
            plan = check_compatible(cls, existing, has_rows)
            for col in plan.check_filled:
                empty = conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c[col.name].is_(None)))
                missing = int(empty.scalar_one())
                if missing:
                    raise SchemaError(
                        f"relation {name!r}: field {col.name!r} of {cls.__name__} is now required but {missing} "
                        f"stored row(s) have no value; give it a default (or make it Optional), or fill the column "
                        f"first, e.g. app.sql('UPDATE {name} SET {col.name} = :value WHERE {col.name} IS NULL', "
                        f"{{'value': ...}}, write=True)"
                    )
            for col in plan.add:
                ddl = sa.schema.CreateColumn(table.c[col.name]).compile(dialect=self.engine.dialect)
                conn.execute(sa.text(f'ALTER TABLE "{name}" ADD COLUMN {ddl}'))
                default = col.default_db_value()
                if has_rows and default is not None:
                    # Existing rows get the default, for SQL queries as for reads.
                    conn.execute(table.update().values({col.name: default}))
            if self.dialect == "sqlite":
                return plan.relax
            for column in plan.relax:
                conn.execute(sa.text(f'ALTER TABLE "{name}" ALTER COLUMN "{column}" DROP NOT NULL'))
        return []

    def watch(self, cls: type[Record], component: str = "", flow: str = "") -> None:
        """Record changes of ``cls`` in the outbox: ``component.flow`` is
        triggered by them (declared in the registry other processes read)."""
        self.register(cls)
        self.outbox.declare(cls.relation(), component, flow)

    def relation(self, cls: type[Record]) -> Relation:
        rel = self._relations.get(cls.relation())
        if rel is None or rel.cls is not cls:
            self.register(cls)
            rel = self._relations[cls.relation()]
        return rel

    def has_table(self, name: str) -> bool:
        """Whether the database has a table ``name`` (a relation some code
        of the app stored rows in, registered here or not)."""
        return bool(sa.inspect(self.engine).has_table(name))

    def relation_class(self, name: str) -> type[Record] | None:
        """The Record class registered for a table name."""
        rel = self._relations.get(name)
        return rel.cls if rel else None

    # -- validation -------------------------------------------------------

    @staticmethod
    def validate(items: Iterable[Record | Mapping[str, Any]], cls: type[R] | None = None) -> list[Record]:
        """Records from instances or dicts (dicts need ``cls``); all problems
        of all items reported in one RecordValidationError (see
        :func:`tidal.relations.validation.validate`)."""
        return validate(items, cls)

    # -- writes -----------------------------------------------------------

    def _register_all(self, records: Sequence[Record]) -> None:
        """Create or adapt the tables of a batch before its transaction:
        DDL on another connection would wait for the batch's lock (SQLite)
        or commit half of it (the shared in-memory connection)."""
        for cls in dict.fromkeys(type(r) for r in records):
            self.relation(cls)

    def _watched_in(self, records: Sequence[Record]) -> set[str]:
        """The relations of a batch whose changes go to the outbox. Asked
        before the batch's transaction: reading the registry inside it would
        open a second connection, which on the shared in-memory database is
        the same one, and closing it would roll the batch back."""
        names = {type(r).relation() for r in records}
        return {name for name in names if self.outbox.watched(name)}

    def _tx(self) -> AbstractContextManager[sa.Connection]:
        return self.begin()

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    def insert_many(self, records: Sequence[Record], *, upsert: bool = False) -> list[Record]:
        """Store records in one transaction; returns them as stored (with
        timestamps). Without ``upsert`` an existing id is an error."""
        now = utcnow()
        stored: list[Record] = []
        changes: list[dict[str, Any]] = []
        self._register_all(records)
        watched = self._watched_in(records)
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
                    raise refused(rel, len(stored), record.id, exc) from exc
                stored.append(new)
                if rel.cls.relation() in watched:
                    changes.append(self.outbox.row(rel.cls.relation(), "update" if old else "insert", new, old))
            self.outbox.write(conn, changes)
        if changes:
            self._changed()
        return stored

    def update_many(self, records: Sequence[Record]) -> list[Record]:
        """Replace stored records (by id) in one transaction; a missing id is
        RecordNotFoundError and nothing is written."""
        now = utcnow()
        stored: list[Record] = []
        changes: list[dict[str, Any]] = []
        self._register_all(records)
        watched = self._watched_in(records)
        with self._tx() as conn:
            for record in records:
                rel = self.relation(type(record))
                old = self._get(conn, rel, record.id)
                if old is None:
                    raise RecordNotFoundError(
                        f"relation {rel.cls.relation()!r} has no record {record.id!r}; nothing was written"
                    )
                new = record.model_copy(update={"created_at": old.created_at, "updated_at": now})
                try:
                    conn.execute(rel.table.update().where(rel.table.c.id == record.id), to_row(new, rel.columns))
                except sa.exc.IntegrityError as exc:
                    raise refused(rel, len(stored), record.id, exc) from exc
                stored.append(new)
                if rel.cls.relation() in watched:
                    changes.append(self.outbox.row(rel.cls.relation(), "update", new, old))
            self.outbox.write(conn, changes)
        if changes:
            self._changed()
        return stored

    def delete_many(self, cls: type[R], ids: Sequence[str]) -> list[R]:
        """Delete records by id in one transaction; returns what was deleted.
        A missing id is RecordNotFoundError and nothing is deleted."""
        rel = self.relation(cls)
        check_ids(cls, ids)
        deleted: list[R] = []
        changes: list[dict[str, Any]] = []
        watched = self.outbox.watched(cls.relation())
        with self._tx() as conn:
            for record_id in ids:
                old = self._get(conn, rel, record_id)
                if old is None:
                    raise RecordNotFoundError(
                        f"relation {cls.relation()!r} has no record {record_id!r}; nothing was deleted"
                    )
                conn.execute(rel.table.delete().where(rel.table.c.id == record_id))
                deleted.append(old)  # type: ignore[arg-type]
                if watched:
                    changes.append(self.outbox.row(cls.relation(), "delete", old, None))
            self.outbox.write(conn, changes)
        if changes:
            self._changed()
        return deleted

    # -- reads ------------------------------------------------------------

    def _get(self, conn: sa.Connection, rel: Relation, record_id: str) -> Record | None:
        row = conn.execute(sa.select(rel.table).where(rel.table.c.id == record_id)).mappings().first()
        return None if row is None else rel.record(row)

    def get(self, cls: type[R], record_id: str) -> R | None:
        """The record with this id, or None."""
        rel = self.relation(cls)
        check_ids(cls, [record_id])
        with self.connect() as conn:
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
        names (prefix ``-`` for descending; empty values last either way)."""
        rel = self.relation(cls)
        table = rel.table
        stmt = sa.select(table)
        if where:
            check_where(cls, rel.columns, where)
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
            order = table.c[name].desc() if key.startswith("-") else table.c[name].asc()
            stmt = stmt.order_by(order.nulls_last())  # the same on SQLite (NULL smallest) and PostgreSQL
        stmt = stmt.order_by(table.c.id).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [rel.record(r) for r in rows]  # type: ignore[misc]

    def count(self, cls: type[Record]) -> int:
        rel = self.relation(cls)
        with self.connect() as conn:
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
        missing = [name for name in stmt.compile().params if name not in (params or {})]
        if missing:
            raise TypeError(
                f"app.sql: no value for placeholder(s) {', '.join(':' + m for m in missing)}; pass them in params "
                "(write a literal colon as \\:)"
            )
        with self.connect() as conn:
            if not write:
                _read_only(conn, self.dialect)
            try:
                if not write and self.dialect == "postgresql":
                    rows = self._pg_read(conn, stmt, dict(params or {}))
                else:
                    result = conn.execute(stmt, dict(params or {}))
                    rows = (
                        Rows(list(result.keys()), [tuple(r) for r in result.fetchall()])
                        if result.returns_rows
                        else Rows([], [])
                    )
                if write:
                    conn.commit()
            except sa.exc.DBAPIError as exc:
                if not write and is_read_only_violation(exc):
                    raise ReadOnlyError(
                        "app.sql is read-only; pass write=True to run statements that change the database "
                        f"(nothing was changed): {str(exc.orig).strip()}"
                    ) from exc
                raise
            finally:
                if not write:
                    _read_write(conn, self.dialect)
        return rows

    def _pg_read(self, conn: sa.Connection, stmt: sa.TextClause, params: dict[str, Any]) -> Rows:
        """Run one read-only statement on PostgreSQL. Without parameters
        psycopg would send the text with the simple query protocol, which
        runs several statements: ``COMMIT; DROP TABLE doc`` would end the
        read-only transaction and drop the table. A pipeline sends it with
        the extended protocol, which refuses more than one statement."""
        import psycopg

        compiled = stmt.compile(dialect=self.engine.dialect)
        values = compiled.construct_params(params)
        driver = conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        try:
            with driver.cursor() as cursor:
                with driver.pipeline() as pipeline:
                    cursor.execute(str(compiled), values)
                    pipeline.sync()
                if cursor.description is None:
                    return Rows([], [])
                return Rows([d.name for d in cursor.description], [tuple(r) for r in cursor.fetchall()])
        except psycopg.Error as exc:
            raise sa.exc.DBAPIError.instance(
                str(compiled), values, exc, psycopg.Error, dialect=self.engine.dialect
            ) from exc

    # -- outbox -----------------------------------------------------------

    def pending_changes(self, limit: int = 500, relations: Sequence[str] | None = None) -> list[Change]:
        """The oldest changes not yet handed to the queue (of ``relations``)."""
        return self.outbox.pending(limit, relations)

    def ack_changes(self, ids: Sequence[int]) -> None:
        """Forget changes whose ops are queued."""
        self.outbox.ack(ids)

    def close(self) -> None:
        self.engine.dispose()


_databases: weakref.WeakSet[Database] = weakref.WeakSet()
_inherited_pools: list[Any] = []
"""Connection pools a forked child inherited: kept alive so that they are
never closed there (see ``Database._after_fork_in_child``)."""


def _after_fork_in_child() -> None:
    for database in list(_databases):
        database._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


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
