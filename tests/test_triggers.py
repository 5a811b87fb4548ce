"""Relation triggers: ``@C.update(on=Rec)`` and ``@C.serve(..., on=Rec, into=Derived)``
fire on inserts, updates and deletes, routed to an instance, and
``app.backfill`` replays a relation through a trigger added later.

Every test waits with ``flush_update`` (which dispatches the outbox first) or
``app.dispatch_changes()``, never with a sleep."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app

import tidal
from tidal import Component, DefinitionError, UpdateFailedError
from tidal.config import Settings


class Doc(tidal.Record):
    title: str
    body: str


class Purchase(tidal.Record):
    user: str
    item: str


class Summary(tidal.Record):
    words: int
    event: str


def words(text: str) -> set[str]:
    return set(text.lower().split())


def define_index(app: tidal.App, name: str = "Index") -> Component:
    """An inverted index of Doc bodies (word -> sorted doc ids) kept by a
    relation trigger, plus the log of the changes it saw."""
    Index = app.component(name)

    @Index.init_state
    def setup() -> dict[str, Any]:
        return {"index": {}, "events": [], "backfilled": []}

    @Index.update(on=Doc)
    def on_doc(state: Any, props: Any) -> dict[str, Any]:
        doc, event = props["record"], props["event"]
        index = {word: set(ids) for word, ids in state["index"].items()}
        if event == "update":
            assert props["old"].id == doc.id
            gone = words(props["old"].body)
        elif event == "delete":
            gone = words(doc.body)
        else:
            assert props["old"] is None
            gone = set()
        for word in gone:
            index.get(word, set()).discard(doc.id)
        if event != "delete":
            for word in words(doc.body):
                index.setdefault(word, set()).add(doc.id)
        out = {
            "index": {word: sorted(ids) for word, ids in index.items() if ids},
            "events": state["events"] + [(event, doc.id)],
        }
        if props.get("backfill"):
            out["backfilled"] = state["backfilled"] + [doc.id]
        return out

    return Index


def all_ids(index: dict[str, list[str]]) -> set[str]:
    return {doc_id for ids in index.values() for doc_id in ids}


def test_an_instance_opened_before_any_record_is_written_gets_its_triggers(tmp_path: Path) -> None:
    app = make_app("sqlite", tmp_path)
    Index = define_index(app)
    opened: list[tidal.Instance] = []
    thread = threading.Thread(target=lambda: opened.append(Index("global")), daemon=True)
    thread.start()
    thread.join(5)
    if not opened:
        tidal.engine.runtime._open.discard(app)  # closing it would hang the same way, at exit too
        pytest.fail("opening the instance hung (App.start_helpers opening the relations database)")
    try:
        doc = app.insert(Doc(title="t", body="hello"))
        opened[0].flush_update(timeout=10)
        assert opened[0].read_state("index") == {"hello": [doc.id]}
    finally:
        app.close()


# -- events reach the state ---------------------------------------------------


def test_inserts_updates_and_deletes_keep_an_inverted_index_exact(app: tidal.App) -> None:
    index = define_index(app)("global")
    a = app.insert(Doc(title="a", body="red fox"))
    b = app.insert(Doc(title="b", body="red hen"))
    index.flush_update(timeout=10)
    assert index.read_state("index") == {"red": sorted([a.id, b.id]), "fox": [a.id], "hen": [b.id]}

    app.update(a.model_copy(update={"body": "blue fox"}))
    index.flush_update(timeout=10)
    assert index.read_state("index") == {"red": [b.id], "blue": [a.id], "fox": [a.id], "hen": [b.id]}

    app.delete(Doc, b.id)
    index.flush_update(timeout=10)
    assert index.read_state("index") == {"blue": [a.id], "fox": [a.id]}
    assert b.id not in all_ids(index.read_state("index"))
    assert index.read_state("events") == [("insert", a.id), ("insert", b.id), ("update", a.id), ("delete", b.id)]


def test_upsert_fires_insert_then_update(app: tidal.App) -> None:
    index = define_index(app)("global")
    doc = app.upsert(Doc(title="t", body="one"))
    app.upsert(doc.model_copy(update={"body": "two"}))
    index.flush_update(timeout=10)
    assert index.read_state("index") == {"two": [doc.id]}
    assert index.read_state("events") == [("insert", doc.id), ("update", doc.id)]


def test_events_choose_which_changes_fire(app: tidal.App) -> None:
    Audit = app.component("Audit")

    @Audit.init_state
    def setup() -> dict[str, Any]:
        return {"inserted": [], "deleted": []}

    @Audit.update(on=Doc, events="insert")
    def inserted(state: Any, props: Any) -> dict[str, Any]:
        assert props["event"] == "insert"
        return {"inserted": state["inserted"] + [props["record"].id]}

    @Audit.update(on=Doc, events=("delete",))
    def deleted(state: Any, props: Any) -> dict[str, Any]:
        assert props["event"] == "delete"
        return {"deleted": state["deleted"] + [props["record"].title]}

    audit = Audit("global")
    a, b = app.insert_many([Doc(title="a", body="x"), Doc(title="b", body="y")])
    app.update(a.model_copy(update={"body": "changed"}))
    app.delete(Doc, b.id)
    audit.flush_update(timeout=10)
    assert audit.read_state("inserted") == [a.id, b.id]
    assert audit.read_state("deleted") == ["b"]


def test_a_relation_without_triggers_writes_no_outbox(app: tidal.App) -> None:
    define_index(app)("global")
    app.insert(Purchase(user="u", item="i"))
    assert app.sql("SELECT count(*) AS n FROM tidal_changes WHERE relation = 'purchase'").scalar() == 0


# -- routing ------------------------------------------------------------------


def define_prefs(app: tidal.App, route: Any) -> Component:
    Prefs = app.component("Prefs", params={"max_items": 2})

    @Prefs.init_state
    def setup(greeting: str = "hello") -> dict[str, Any]:
        return {"items": [], "greeting": greeting}

    @Prefs.update(on=Purchase, instance=route)
    def bought(state: Any, props: Any) -> dict[str, Any]:
        item = props["record"].item
        if props["event"] == "delete":
            return {"items": [i for i in state["items"] if i != item]}
        return {"items": (state["items"] + [item])[-Prefs.params["max_items"] :]}

    return Prefs


def test_an_instance_function_routes_each_record_to_its_instance_created_on_demand(app: tidal.App) -> None:
    Prefs = define_prefs(app, lambda p: f"user-{p.user}")
    assert app.store.list_instances("Prefs") == []
    purchases = app.insert_many(
        [
            Purchase(user="ann", item="boots"),
            Purchase(user="bob", item="tent"),
            Purchase(user="ann", item="rope"),
            Purchase(user="ann", item="map"),
        ]
    )
    app.dispatch_changes()
    assert app.store.list_instances("Prefs") == ["user-ann", "user-bob"]

    ann, bob = Prefs("user-ann"), Prefs("user-bob")
    ann.flush_update(timeout=10)
    bob.flush_update(timeout=10)
    assert ann.read_state("items") == ["rope", "map"]
    assert ann.read_state("greeting") == "hello"  # made by init_state
    assert bob.read_state("items") == ["tent"]

    app.delete(Purchase, purchases[1].id)  # routed by the record as it was
    bob.flush_update(timeout=10)
    assert bob.read_state("items") == []
    assert ann.read_state("items") == ["rope", "map"]


def test_a_routing_function_that_fails_drops_only_its_own_trigger(
    app: tidal.App, caplog: pytest.LogCaptureFixture
) -> None:
    def route(p: Purchase) -> str:
        if p.user == "bad":
            raise ValueError("no route for bad users")
        return p.user  # "" is refused: instance ids are non-empty

    Prefs = define_prefs(app, route)
    Log = app.component("Log")

    @Log.init_state
    def setup() -> dict[str, Any]:
        return {"users": []}

    @Log.update(on=Purchase)
    def log(state: Any, props: Any) -> dict[str, Any]:
        return {"users": state["users"] + [props["record"].user]}

    with caplog.at_level(logging.ERROR, logger="tidal.dispatch"):
        app.insert_many(
            [
                Purchase(user="ann", item="boots"),
                Purchase(user="bad", item="x"),
                Purchase(user="", item="y"),
                Purchase(user="bob", item="tent"),
            ]
        )
        app.dispatch_changes()
    assert "Prefs.bought on purchase insert" in caplog.text
    assert "no route for bad users" in caplog.text
    assert "returned ''" in caplog.text
    assert app.sql("SELECT count(*) FROM tidal_changes").scalar() == 0
    assert app.store.list_instances("Prefs") == ["ann", "bob"]

    log_instance = Log("global")
    log_instance.flush_update(timeout=10)
    assert log_instance.read_state("users") == ["ann", "bad", "", "bob"]
    app.insert(Purchase(user="bob", item="rope"))
    bob = Prefs("bob")
    bob.flush_update(timeout=10)
    assert bob.read_state("items") == ["tent", "rope"]


# -- PostgreSQL relations, SQLite state ----------------------------------------


def test_triggers_on_relations_in_postgresql_with_state_in_sqlite(tmp_path: Path, pg_url: str) -> None:
    store_file = tmp_path / "state.db"
    app = tidal.App(
        "pg",
        store=f"sqlite:///{store_file}",
        home=tmp_path / "home",
        db=pg_url,
        settings=Settings(lease_seconds=2.0, sweep_seconds=0.2),
    )
    try:
        Prefs = define_prefs(app, lambda p: p.user)
        index = define_index(app)("global")
        a, b = app.insert_many([Doc(title="a", body="red fox"), Doc(title="b", body="red hen")])
        purchase = app.insert(Purchase(user="ann", item="boots"))
        assert app.db.dialect == "postgresql"
        app.update(a.model_copy(update={"body": "blue fox"}))
        app.delete(Doc, b.id)
        app.update(purchase.model_copy(update={"item": "rope"}))
        index.flush_update(timeout=10)
        ann = Prefs("ann")
        ann.flush_update(timeout=10)
        assert index.read_state("index") == {"blue": [a.id], "fox": [a.id]}
        assert index.read_state("events") == [("insert", a.id), ("insert", b.id), ("update", a.id), ("delete", b.id)]
        assert ann.read_state("items") == ["boots", "rope"]
        # The outbox lived (and was emptied) in PostgreSQL; the SQLite file holds state only.
        assert app.sql("SELECT count(*) FROM tidal_changes").scalar() == 0
        with sqlite3.connect(store_file) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not tables & {"doc", "purchase", "tidal_changes"}

        late = define_index(app, "Late")
        assert app.backfill(late) == 1
        with late("global") as handle:
            handle.flush_update(timeout=10)
            assert handle.read_state("index") == {"blue": [a.id], "fox": [a.id]}
    finally:
        app.close()


# -- serve triggers with into= --------------------------------------------------


def define_summarizer(app: tidal.App) -> Component:
    Summarizer = app.component("Summarizer")

    @Summarizer.init_state
    def setup() -> dict[str, Any]:
        return {"seen": []}

    @Summarizer.serve("summarize", on=Doc, into=Summary)
    def summarize(state: Any, props: Any) -> Any:
        body = props["record"].body
        if body == "broken":
            return "not a dict"
        return {"words": len(body.split()), "event": props["event"]}

    @Summarizer.update("summarize")
    def remember(state: Any, props: Any) -> dict[str, Any]:
        return {"seen": state["seen"] + [(props["event"], props.serve_result["words"])]}

    return Summarizer


def test_a_serve_trigger_stores_each_result_as_a_derived_record(app: tidal.App) -> None:
    summarizer = define_summarizer(app)("global")
    doc = app.insert(Doc(title="a", body="one two three"))
    summarizer.flush_update(timeout=10)
    first = app.get(Summary, doc.id)
    assert first is not None
    assert (first.words, first.event) == (3, "insert")

    app.update(doc.model_copy(update={"body": "one"}))
    summarizer.flush_update(timeout=10)
    updated = app.get(Summary, doc.id)
    assert updated is not None
    assert (updated.words, updated.event) == (1, "update")
    assert updated.created_at == first.created_at

    app.delete(Doc, doc.id)
    summarizer.flush_update(timeout=10)
    assert app.get(Summary, doc.id) == updated  # a delete runs the flow but stores nothing
    assert app.query(Summary) == [updated]
    # The flow's update op got each serve result, the delete's included.
    assert summarizer.read_state("seen") == [("insert", 3), ("update", 1), ("delete", 1)]

    # Called directly, the serve op returns its result and stores no record.
    other = Doc(title="x", body="a b")
    assert summarizer.run("summarize", props={"record": other, "event": "call"}) == {"words": 2, "event": "call"}
    summarizer.flush_update(timeout=10)
    assert app.get(Summary, other.id) is None


def test_a_serve_trigger_whose_result_cannot_be_stored_fails_its_op_only(app: tidal.App) -> None:
    summarizer = define_summarizer(app)("global")
    bad, good = app.insert_many([Doc(title="bad", body="broken"), Doc(title="good", body="fine")])
    with pytest.raises(UpdateFailedError, match="with into= it must return a dict of Summary fields"):
        summarizer.flush_update(timeout=10)
    assert app.get(Summary, bad.id) is None
    assert app.get(Summary, good.id) is not None
    assert summarizer.read_state("seen") == [("insert", 1)]


# -- backfill -----------------------------------------------------------------


def test_backfill_replays_records_stored_before_the_trigger_existed(app: tidal.App) -> None:
    docs = app.insert_many([Doc(title=str(i), body=f"common word{i}") for i in range(5)])
    app.delete(Doc, docs[0].id)  # gone before the component existed: never replayed
    Index = define_index(app)
    index = Index("global")
    index.flush_update(timeout=10)
    assert index.read_state("index") == {}  # old records do not fire on their own

    assert app.backfill(Index) == 4
    index.flush_update(timeout=10)
    kept = [d.id for d in docs[1:]]
    assert index.read_state("index")["common"] == sorted(kept)
    assert sorted(index.read_state("backfilled")) == sorted(kept)
    # Records written in one transaction share created_at: replayed in id order then.
    assert sorted(index.read_state("events")) == sorted(("insert", d) for d in kept)

    # The trigger, added after the database was opened, sees new changes too.
    late = app.insert(Doc(title="late", body="common late"))
    app.delete(Doc, docs[1].id)
    index.flush_update(timeout=10)
    assert index.read_state("index")["common"] == sorted([*kept[1:], late.id])
    assert index.read_state("index")["late"] == [late.id]
    assert docs[1].id not in all_ids(index.read_state("index"))
    assert sorted(index.read_state("backfilled")) == sorted(kept)


def test_backfill_in_batches_routes_each_record_to_its_instance(app: tidal.App) -> None:
    users = ["ann", "bob", "cy"]
    app.insert_many([Purchase(user=users[i % 3], item=f"item{i}") for i in range(6)])
    Prefs = define_prefs(app, lambda p: p.user)
    assert app.backfill(Prefs, flow="bought", batch=4) == 6
    assert app.store.list_instances("Prefs") == users
    items = {}
    for user in users:
        prefs = Prefs(user)
        prefs.flush_update(timeout=10)
        items[user] = sorted(prefs.read_state("items"))
    assert items == {"ann": ["item0", "item3"], "bob": ["item1", "item4"], "cy": ["item2", "item5"]}


def test_backfill_misses_no_record_when_records_are_deleted_meanwhile(
    app: tidal.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [app.insert(Doc(title=str(i), body=f"common w{i}")) for i in range(7)]
    Index = define_index(app)
    enqueue_many = app.store.enqueue_many
    deleted: list[str] = []

    def enqueue_then_delete(ops: Any) -> Any:
        ids = enqueue_many(ops)
        if not deleted and ops and ops[0].flow == "on_doc":  # after backfill's first batch
            deleted.append(docs[0].id)
            app.delete(Doc, docs[0].id)
        return ids

    monkeypatch.setattr(app.store, "enqueue_many", enqueue_then_delete)
    assert app.backfill(Index, batch=2) == 7
    index = Index("global")
    index.flush_update(timeout=10)
    assert index.read_state("index")["common"] == sorted(d.id for d in docs[1:])
    assert sorted(index.read_state("backfilled")) == sorted(d.id for d in docs)


def test_backfill_replays_only_into_triggers_that_take_inserts(app: tidal.App) -> None:
    doc = app.insert(Doc(title="t", body="b"))
    Both = app.component("Both")

    @Both.init_state
    def setup() -> dict[str, Any]:
        return {"inserted": [], "deleted": []}

    @Both.update(on=Doc, events="insert")
    def inserted(state: Any, props: Any) -> dict[str, Any]:
        return {"inserted": state["inserted"] + [props["record"].id]}

    @Both.update(on=Doc, events=("delete",))
    def deleted(state: Any, props: Any) -> dict[str, Any]:
        return {"deleted": state["deleted"] + [props["event"]]}

    assert app.backfill(Both) == 1
    both = Both("global")
    both.flush_update(timeout=10)
    assert (both.read_state("inserted"), both.read_state("deleted")) == ([doc.id], [])
    with pytest.raises(DefinitionError, match="no relation trigger on inserts for 'deleted'"):
        app.backfill(Both, flow="deleted")


def test_backfill_needs_a_relation_trigger(app: tidal.App) -> None:
    Plain = app.component("Plain")

    @Plain.update("x")
    def x(state: Any, props: Any) -> None:
        return None

    with pytest.raises(DefinitionError, match="component Plain has no relation trigger"):
        app.backfill(Plain)
    Prefs = define_prefs(app, "global")
    with pytest.raises(DefinitionError, match="no relation trigger on inserts for 'nope'"):
        app.backfill(Prefs, flow="nope")


# -- definitions --------------------------------------------------------------


def test_bad_trigger_definitions_are_refused_naming_the_problem() -> None:
    C = Component("Bad")

    def op(state: Any, props: Any) -> None:
        return None

    with pytest.raises(DefinitionError, match=r"on= / into= take a tidal.Record subclass, got <class 'dict'>"):
        C.update(on=dict)(op)
    with pytest.raises(DefinitionError, match=r"events must be some of .*got \('create',\)"):
        C.update(on=Doc, events=("create",))(op)
    with pytest.raises(DefinitionError, match="events must be some of"):
        C.update(on=Doc, events=())(op)
    with pytest.raises(DefinitionError, match="into= stores results of a relation trigger; give on= too"):
        C.serve("s", into=Summary)(op)
    with pytest.raises(DefinitionError, match=r"on= / into= take a tidal\.Record subclass"):
        C.serve("s", on=Doc, into=str)(op)
    assert C.triggers == []
