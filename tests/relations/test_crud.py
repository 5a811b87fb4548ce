"""The App verbs: insert, upsert, update, delete, get and query, one at a
time and in batches, each batch all or nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app

import tidal
from tidal import RecordNotFoundError, RecordValidationError, SchemaError
from tidal.exceptions import ReadOnlyError

from .models import Doc


def titles(app: tidal.App) -> list[str]:
    return sorted(d.title for d in app.query(Doc))


def count(app: tidal.App) -> int:
    return int(app.sql("SELECT count(*) FROM doc").scalar())


# --------------------------------------------------------------------------- insert


def test_insert_returns_the_stored_record_and_leaves_the_argument_alone(db_app: tidal.App) -> None:
    doc = Doc(title="a", views=3)
    stored = db_app.insert(doc)
    assert doc.created_at is None and doc.updated_at is None
    assert stored.id == doc.id and stored.title == "a" and stored.views == 3
    assert db_app.get(Doc, doc.id) == stored


def test_insert_a_dict_with_its_relation(db_app: tidal.App) -> None:
    stored = db_app.insert(Doc, {"title": "from dict", "views": "7"})
    assert isinstance(stored, Doc) and stored.views == 7
    assert db_app.get(Doc, stored.id) == stored


def test_insert_many_records_and_dicts(db_app: tidal.App) -> None:
    stored = db_app.insert_many([Doc(title="a"), Doc(title="b")])
    assert [d.title for d in stored] == ["a", "b"]
    from_dicts = db_app.insert_many([{"title": "c"}, {"title": "d", "public": True}], relation=Doc)
    assert all(isinstance(d, Doc) for d in from_dicts)
    assert titles(db_app) == ["a", "b", "c", "d"]


def test_insert_many_of_nothing(db_app: tidal.App) -> None:
    assert db_app.insert_many([]) == []


def test_insert_many_of_dicts_without_a_relation_is_a_type_error(db_app: tidal.App) -> None:
    with pytest.raises(TypeError, match="relation="):
        db_app.insert_many([{"title": "a"}])


def test_insert_many_across_relations_is_one_transaction(db_app: tidal.App) -> None:
    class Note(tidal.Record):
        text: str

    db_app.insert(Doc(id="taken", title="first"))
    with pytest.raises(RecordValidationError):
        db_app.insert_many([Note(text="n"), Doc(id="taken", title="dup")])
    assert db_app.query(Note) == []
    db_app.insert_many([Note(text="n"), Doc(title="second")])
    assert [n.text for n in db_app.query(Note)] == ["n"]
    assert titles(db_app) == ["first", "second"]


def test_duplicate_id_on_insert_is_an_error_and_writes_nothing(db_app: tidal.App) -> None:
    first = db_app.insert(Doc(id="same", title="first"))
    with pytest.raises(RecordValidationError, match="'same' already exists") as info:
        db_app.insert(Doc(id="same", title="second"))
    assert "nothing was written" in str(info.value)
    assert db_app.get(Doc, "same") == first
    assert count(db_app) == 1


def test_duplicate_id_rolls_back_the_whole_batch(db_app: tidal.App) -> None:
    db_app.insert(Doc(id="old", title="old"))
    batch = [Doc(title="new 1"), Doc(title="new 2"), Doc(id="old", title="clash"), Doc(title="new 3")]
    with pytest.raises(RecordValidationError) as info:
        db_app.insert_many(batch)
    assert info.value.errors == [(2, "id", "duplicate id")]
    assert titles(db_app) == ["old"]


def test_duplicate_id_within_one_batch_writes_nothing(db_app: tidal.App) -> None:
    with pytest.raises(RecordValidationError, match="already exists"):
        db_app.insert_many([Doc(id="x", title="1"), Doc(id="x", title="2")])
    assert count(db_app) == 0


def test_the_database_is_usable_after_a_failed_batch(db_app: tidal.App) -> None:
    db_app.insert(Doc(id="a", title="a"))
    for _ in range(3):
        with pytest.raises(RecordValidationError):
            db_app.insert_many([Doc(title="b"), Doc(id="a", title="again")])
    db_app.insert(Doc(title="b"))
    assert titles(db_app) == ["a", "b"]


# --------------------------------------------------------------------------- upsert


class Watcher:
    """A component triggered by Doc changes, to see which event each write emits."""

    def __init__(self, app: tidal.App) -> None:
        self.events: list[tuple[str, str, str | None]] = []
        comp = app.component("DocWatch")

        @comp.init_state
        def setup() -> dict[str, Any]:
            return {"n": 0}

        @comp.update(on=Doc, instance=lambda d: "all")
        def seen(state: dict[str, Any], props: Any) -> dict[str, Any]:
            old = props["old"]
            self.events.append((props["event"], props["record"].title, old.title if old is not None else None))
            return {"n": state["n"] + 1}

        self.component = comp
        self.app = app

    def flush(self) -> list[tuple[str, str, str | None]]:
        self.component("all").flush_update()
        return self.events


def test_upsert_inserts_then_updates(db_app: tidal.App) -> None:
    watcher = Watcher(db_app)
    inserted = db_app.upsert(Doc(id="u", title="one"))
    assert inserted.created_at == inserted.updated_at
    replaced = db_app.upsert(Doc(id="u", title="two", views=5))
    assert replaced.created_at == inserted.created_at
    assert replaced.updated_at is not None and inserted.updated_at is not None
    assert replaced.updated_at > inserted.updated_at
    assert db_app.get(Doc, "u") == replaced
    assert count(db_app) == 1
    assert watcher.flush() == [("insert", "one", None), ("update", "two", "one")]


def test_upsert_many_mixes_inserts_and_updates_and_dicts(db_app: tidal.App) -> None:
    watcher = Watcher(db_app)
    db_app.insert(Doc(id="a", title="a0"))
    watcher.flush()
    db_app.upsert_many([{"id": "a", "title": "a1"}, {"id": "b", "title": "b1"}], relation=Doc)
    assert titles(db_app) == ["a1", "b1"]
    assert sorted(watcher.flush()) == [("insert", "a0", None), ("insert", "b1", None), ("update", "a1", "a0")]


def test_insert_update_delete_emit_their_events(db_app: tidal.App) -> None:
    watcher = Watcher(db_app)
    doc = db_app.insert(Doc(title="v1"))
    db_app.update(doc.model_copy(update={"title": "v2"}))
    db_app.delete(Doc, doc.id)
    assert watcher.flush() == [("insert", "v1", None), ("update", "v2", "v1"), ("delete", "v2", None)]


def test_a_failed_batch_emits_no_event(db_app: tidal.App) -> None:
    watcher = Watcher(db_app)
    db_app.insert(Doc(id="a", title="a"))
    with pytest.raises(RecordValidationError):
        db_app.insert_many([Doc(title="lost"), Doc(id="a", title="dup")])
    with pytest.raises(RecordNotFoundError):
        db_app.update_many([Doc(id="a", title="lost too"), Doc(id="missing", title="x")])
    assert watcher.flush() == [("insert", "a", None)]


# --------------------------------------------------------------------------- update


def test_update_replaces_every_field(db_app: tidal.App) -> None:
    doc = db_app.insert(Doc(title="a", views=1, tag="t"))
    db_app.update(Doc(id=doc.id, title="b"))
    fetched = db_app.get(Doc, doc.id)
    assert fetched is not None
    assert (fetched.title, fetched.views, fetched.tag) == ("b", 0, None)


def test_update_of_a_missing_id_is_not_found_and_writes_nothing(db_app: tidal.App) -> None:
    with pytest.raises(RecordNotFoundError, match="no record 'ghost'"):
        db_app.update(Doc(id="ghost", title="boo"))
    assert count(db_app) == 0
    assert db_app.get(Doc, "ghost") is None


def test_update_many_with_one_missing_id_writes_nothing(db_app: tidal.App) -> None:
    a, b = db_app.insert_many([Doc(title="a"), Doc(title="b")])
    with pytest.raises(RecordNotFoundError, match="nothing was written"):
        db_app.update_many([a.model_copy(update={"title": "A"}), Doc(id="ghost", title="g"), b])
    assert titles(db_app) == ["a", "b"]
    assert db_app.get(Doc, a.id) == a


def test_update_many(db_app: tidal.App) -> None:
    docs = db_app.insert_many([Doc(title=f"d{i}", views=i) for i in range(4)])
    db_app.update_many([d.model_copy(update={"views": d.views * 10}) for d in docs])
    assert sorted(d.views for d in db_app.query(Doc)) == [0, 10, 20, 30]


# --------------------------------------------------------------------------- delete


def test_delete_returns_the_deleted_record(db_app: tidal.App) -> None:
    doc = db_app.insert(Doc(title="bye"))
    deleted = db_app.delete(Doc, doc.id)
    assert deleted == doc
    assert db_app.get(Doc, doc.id) is None
    assert count(db_app) == 0


def test_delete_of_a_missing_id_is_not_found_and_deletes_nothing(db_app: tidal.App) -> None:
    a, b = db_app.insert_many([Doc(title="a"), Doc(title="b")])
    with pytest.raises(RecordNotFoundError, match="no record 'ghost'"):
        db_app.delete(Doc, "ghost")
    with pytest.raises(RecordNotFoundError, match="nothing was deleted"):
        db_app.delete_many(Doc, [a.id, "ghost", b.id])
    assert titles(db_app) == ["a", "b"]


def test_delete_many(db_app: tidal.App) -> None:
    docs = db_app.insert_many([Doc(title=t) for t in "abc"])
    deleted = db_app.delete_many(Doc, [docs[0].id, docs[2].id])
    assert [d.title for d in deleted] == ["a", "c"]
    assert titles(db_app) == ["b"]


def test_record_not_found_is_a_key_error_and_a_tidal_error(db_app: tidal.App) -> None:
    with pytest.raises(KeyError):
        db_app.delete(Doc, "ghost")
    with pytest.raises(tidal.TidalError):
        db_app.delete(Doc, "ghost")


# --------------------------------------------------------------------------- query


@pytest.fixture
def docs(db_app: tidal.App) -> list[Doc]:
    return db_app.insert_many(
        [
            Doc(id="1", title="c", views=10, score=0.5, public=True, tag="x"),
            Doc(id="2", title="a", views=30, score=0.5, public=False, tag="y"),
            Doc(id="3", title="b", views=20, score=0.9, public=True, tag=None),
            Doc(id="4", title="e", views=20, score=0.1, public=True, tag="x"),
            Doc(id="5", title="d", views=50, score=0.9, public=False, tag=None),
        ]
    )


def ids(records: list[Doc]) -> list[str]:
    return [r.id for r in records]


def test_query_orders_by_created_at_then_id(db_app: tidal.App, docs: list[Doc]) -> None:
    """One batch shares its created_at: ties are broken by id."""
    late = db_app.insert(Doc(id="0", title="late"))
    assert ids(db_app.query(Doc)) == ["1", "2", "3", "4", "5", "0"]
    assert db_app.query(Doc, order_by="-created_at")[0] == late


def test_query_where_equals(db_app: tidal.App, docs: list[Doc]) -> None:
    assert ids(db_app.query(Doc, {"public": True})) == ["1", "3", "4"]
    assert ids(db_app.query(Doc, {"public": True, "views": 20})) == ["3", "4"]
    assert ids(db_app.query(Doc, {"tag": None})) == ["3", "5"]
    assert ids(db_app.query(Doc, {"title": "nope"})) == []


def test_query_order_by_ascending_and_descending(db_app: tidal.App, docs: list[Doc]) -> None:
    assert ids(db_app.query(Doc, order_by="title")) == ["2", "3", "1", "5", "4"]
    assert ids(db_app.query(Doc, order_by="-views")) == ["5", "2", "3", "4", "1"]
    # ties broken by the next key, then by id
    assert ids(db_app.query(Doc, order_by=["-score", "title"])) == ["3", "5", "2", "1", "4"]
    assert ids(db_app.query(Doc, order_by="views")) == ["1", "3", "4", "2", "5"]


def test_query_orders_empty_values_last_both_ways(db_app: tidal.App, docs: list[Doc]) -> None:
    """The same order on SQLite (NULL smallest) and PostgreSQL (NULL largest)."""
    assert ids(db_app.query(Doc, order_by="tag")) == ["1", "4", "2", "3", "5"]
    assert ids(db_app.query(Doc, order_by="-tag")) == ["2", "1", "4", "3", "5"]


def test_query_limit_and_offset(db_app: tidal.App, docs: list[Doc]) -> None:
    assert ids(db_app.query(Doc, order_by="title", limit=2)) == ["2", "3"]
    assert ids(db_app.query(Doc, order_by="title", limit=2, offset=2)) == ["1", "5"]
    assert ids(db_app.query(Doc, order_by="title", offset=4)) == ["4"]
    assert ids(db_app.query(Doc, order_by="title", limit=10, offset=5)) == []
    assert ids(db_app.query(Doc, {"public": True}, order_by="-views", limit=1)) == ["3"]


def test_query_on_an_unknown_field_is_a_schema_error_naming_it(db_app: tidal.App, docs: list[Doc]) -> None:
    with pytest.raises(SchemaError, match="'colour'"):
        db_app.query(Doc, {"colour": "red"})
    with pytest.raises(SchemaError, match="'popularity'"):
        db_app.query(Doc, order_by="-popularity")
    with pytest.raises(SchemaError, match="'nope'"):
        db_app.query(Doc, order_by=["title", "nope"])


def test_query_values_are_bound_not_spliced(db_app: tidal.App, docs: list[Doc]) -> None:
    assert db_app.query(Doc, {"title": "a' OR '1'='1"}) == []
    assert count(db_app) == 5


def test_query_returns_records_of_the_class(db_app: tidal.App, docs: list[Doc]) -> None:
    found = db_app.query(Doc, {"id": "2"})
    assert found == [docs[1]]
    assert isinstance(found[0], Doc)


# --------------------------------------------------------------------------- tables made in a batch


def test_a_batch_of_relations_never_stored_before(db_app: tidal.App) -> None:
    """The tables of a batch are made before its transaction: on SQLite, made
    inside it from another connection, they waited 30 s for its lock."""

    class First(tidal.Record):
        a: str

    class Second(tidal.Record):
        b: str

    started = time.monotonic()
    db_app.insert_many([First(a="1"), Second(b="2"), First(a="3")])
    assert time.monotonic() - started < 5
    assert [f.a for f in db_app.query(First, order_by="a")] == ["1", "3"]
    assert [s.b for s in db_app.query(Second)] == ["2"]


# --------------------------------------------------------------------------- the in-memory database


def test_memory_store_keeps_relations_in_memory(tmp_path: Path) -> None:
    app = make_app("memory", tmp_path)
    try:
        assert app.db.url == "sqlite://"
        stored = app.insert(Doc(title="a"))
        assert app.get(Doc, stored.id) == stored
        with pytest.raises(ReadOnlyError):
            app.sql("DELETE FROM doc")
        assert titles(app) == ["a"]
    finally:
        app.close()


def test_in_memory_database_is_safe_across_threads(tmp_path: Path) -> None:
    """All threads share the one connection of the in-memory database; they
    must take turns, or one thread's rollback (or read-only switch) lands in
    another's transaction."""
    app = make_app("memory", tmp_path)
    errors: list[BaseException] = []

    def run(work: Callable[[int], object]) -> None:
        try:
            for i in range(100):
                work(i)
        except BaseException as exc:
            errors.append(exc)

    def write(i: int) -> None:
        db_app_batch = [Doc(title=f"w{i}-{j}") for j in range(3)]
        app.insert_many(db_app_batch)

    def fail(i: int) -> None:
        with pytest.raises(RecordValidationError):
            app.insert_many([Doc(title="lost"), Doc(id="fixed", title="dup")])

    def read(i: int) -> None:
        app.sql("SELECT count(*) FROM doc").scalar()
        with pytest.raises(ReadOnlyError):
            app.sql("DELETE FROM doc")

    try:
        app.insert(Doc(id="fixed", title="fixed"))
        threads = [threading.Thread(target=run, args=(w,)) for w in (write, write, fail, read, read)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert count(app) == 1 + 2 * 100 * 3
    finally:
        app.close()
