"""app.sql: bound parameters only, read-only unless asked, rows as dicts,
tuples, a scalar, Arrow or pandas."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

import tidal
from tidal.exceptions import ReadOnlyError

from .models import Doc

EVIL = "x'; DROP TABLE doc; --"


@pytest.fixture
def docs(db_app: tidal.App) -> list[Doc]:
    return db_app.insert_many(
        [
            Doc(id="1", title="alpha", views=10, score=0.5, public=True, tag="x"),
            Doc(id="2", title="beta", views=30, score=1.5, public=False, tag="y"),
            Doc(id="3", title="gamma", views=20, score=2.5, public=True, tag=None),
        ]
    )


def doc_count(app: tidal.App) -> int:
    return int(app.sql("SELECT count(*) FROM doc").scalar())


# --------------------------------------------------------------------------- parameters


def test_named_parameters(db_app: tidal.App, docs: list[Doc]) -> None:
    rows = db_app.sql(
        "SELECT title, views FROM doc WHERE views >= :low AND public = :public ORDER BY views",
        {"low": 15, "public": True},
    )
    assert list(rows) == [{"title": "gamma", "views": 20}]


def test_the_same_parameter_twice(db_app: tidal.App, docs: list[Doc]) -> None:
    rows = db_app.sql("SELECT id FROM doc WHERE title = :t OR tag = :t ORDER BY id", {"t": "x"})
    assert rows.tuples() == [("1",)]


def test_a_malicious_value_is_data(db_app: tidal.App, docs: list[Doc]) -> None:
    assert list(db_app.sql("SELECT id FROM doc WHERE title = :t", {"t": EVIL})) == []
    assert doc_count(db_app) == 3
    stored = db_app.insert(Doc(title=EVIL))
    rows = db_app.sql("SELECT id, title FROM doc WHERE title = :t", {"t": EVIL})
    assert list(rows) == [{"id": stored.id, "title": EVIL}]
    assert db_app.sql("SELECT :v AS v", {"v": EVIL}).scalar() == EVIL
    assert doc_count(db_app) == 4


def test_a_malicious_value_is_data_in_writes_too(db_app: tidal.App, docs: list[Doc]) -> None:
    db_app.sql("UPDATE doc SET tag = :tag WHERE id = :id", {"tag": EVIL, "id": "1"}, write=True)
    assert db_app.get(Doc, "1").tag == EVIL  # type: ignore[union-attr]
    assert doc_count(db_app) == 3


def test_a_missing_parameter_is_named(db_app: tidal.App, docs: list[Doc]) -> None:
    with pytest.raises(TypeError, match=":low"):
        db_app.sql("SELECT id FROM doc WHERE views > :low", {})
    with pytest.raises(TypeError, match=":low"):
        db_app.sql("SELECT id FROM doc WHERE views > :low")


def test_parameters_must_be_a_mapping(db_app: tidal.App, docs: list[Doc]) -> None:
    with pytest.raises(TypeError, match="dict of bound parameters"):
        db_app.sql("SELECT id FROM doc WHERE title = :t", ("alpha",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SQL string"):
        db_app.sql(b"SELECT 1")  # type: ignore[arg-type]


def test_sql_sees_records_and_joins_relations(db_app: tidal.App, docs: list[Doc]) -> None:
    class Vote(tidal.Record):
        doc_id: str
        up: bool

    db_app.insert_many([Vote(doc_id="1", up=True), Vote(doc_id="1", up=True), Vote(doc_id="3", up=False)])
    rows = db_app.sql(
        "SELECT d.title, count(v.id) AS n FROM doc d LEFT JOIN vote v ON v.doc_id = d.id "
        "GROUP BY d.title ORDER BY d.title"
    )
    assert rows.tuples() == [("alpha", 2), ("beta", 0), ("gamma", 1)]


# --------------------------------------------------------------------------- read-only


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO doc (id, title, views, score, public) VALUES ('9', 'new', 0, 0, :f)",
        "UPDATE doc SET title = 'changed' WHERE id = '1' AND public = :f OR true",
        "DELETE FROM doc WHERE public = :f OR true",
        "DROP TABLE doc",
        "CREATE TABLE intruder (a INTEGER)",
    ],
)
def test_sql_is_read_only_by_default(db_app: tidal.App, docs: list[Doc], statement: str) -> None:
    params = {"f": False} if ":f" in statement else None
    with pytest.raises(ReadOnlyError, match=r"app\.sql is read-only; pass write=True"):
        db_app.sql(statement, params)
    assert doc_count(db_app) == 3
    assert db_app.query(Doc, order_by="id") == docs
    with pytest.raises(Exception, match="intruder"):
        db_app.sql("SELECT * FROM intruder")


def test_read_only_error_is_a_tidal_error(db_app: tidal.App, docs: list[Doc]) -> None:
    with pytest.raises(tidal.TidalError):
        db_app.sql("DELETE FROM doc")
    with pytest.raises(PermissionError):
        db_app.sql("DELETE FROM doc")


def test_several_statements_cannot_escape_read_only(db_app: tidal.App, docs: list[Doc]) -> None:
    for statement in ("COMMIT; DROP TABLE doc", "SELECT 1; DELETE FROM doc", "ROLLBACK; DELETE FROM doc; COMMIT"):
        with pytest.raises(Exception):  # noqa: B017 - each driver words it its own way
            db_app.sql(statement)
    assert doc_count(db_app) == 3


def test_writes_work_after_a_refused_one(db_app: tidal.App, docs: list[Doc]) -> None:
    """The connection that ran a read-only query goes back to the pool writable."""
    for _ in range(3):
        with pytest.raises(ReadOnlyError):
            db_app.sql("DELETE FROM doc")
        db_app.sql("SELECT 1")
    db_app.insert(Doc(title="later"))
    db_app.update(docs[0].model_copy(update={"views": 99}))
    assert doc_count(db_app) == 4
    assert db_app.get(Doc, "1").views == 99  # type: ignore[union-attr]


def test_write_true_allows_writes(db_app: tidal.App, docs: list[Doc]) -> None:
    rows = db_app.sql("UPDATE doc SET views = views + :n WHERE public = :p", {"n": 1, "p": True}, write=True)
    assert list(rows) == []
    assert sorted(d.views for d in db_app.query(Doc)) == [11, 21, 30]
    db_app.sql("DELETE FROM doc WHERE id = :id", {"id": "2"}, write=True)
    assert doc_count(db_app) == 2
    db_app.sql("CREATE TABLE scratch (a INTEGER)", write=True)
    db_app.sql("INSERT INTO scratch (a) VALUES (:a)", {"a": 5}, write=True)
    assert db_app.sql("SELECT a FROM scratch").scalar() == 5


def test_write_true_returns_rows_of_returning(db_app: tidal.App, docs: list[Doc]) -> None:
    rows = db_app.sql("DELETE FROM doc WHERE views > :v RETURNING id", {"v": 15}, write=True)
    assert sorted(r["id"] for r in rows) == ["2", "3"]
    assert doc_count(db_app) == 1


def test_a_failed_write_changes_nothing(db_app: tidal.App, docs: list[Doc]) -> None:
    with pytest.raises(Exception, match="no_such_column"):
        db_app.sql("UPDATE doc SET no_such_column = 1", write=True)
    assert db_app.query(Doc, order_by="id") == docs


# --------------------------------------------------------------------------- Rows


def test_rows_are_dicts_in_column_order(db_app: tidal.App, docs: list[Doc]) -> None:
    rows = db_app.sql("SELECT views, title FROM doc ORDER BY views DESC")
    assert rows.columns == ["views", "title"]
    assert len(rows) == 3
    assert rows[0] == {"views": 30, "title": "beta"}
    assert list(rows[0]) == ["views", "title"]
    assert [r["title"] for r in rows] == ["beta", "gamma", "alpha"]
    assert rows.tuples() == [(30, "beta"), (20, "gamma"), (10, "alpha")]
    assert "3 x ['views', 'title']" in repr(rows)


def test_rows_scalar(db_app: tidal.App, docs: list[Doc]) -> None:
    assert db_app.sql("SELECT sum(views) FROM doc").scalar() == 60
    assert db_app.sql("SELECT title, views FROM doc ORDER BY views").scalar() == "alpha"
    assert db_app.sql("SELECT title FROM doc WHERE id = :id", {"id": "nope"}).scalar() is None


def test_empty_result_keeps_its_columns(db_app: tidal.App, docs: list[Doc]) -> None:
    rows = db_app.sql("SELECT id, title FROM doc WHERE views > :v", {"v": 1000})
    assert len(rows) == 0 and list(rows) == [] and rows.tuples() == []
    assert rows.columns == ["id", "title"]
    assert list(rows.df().columns) == ["id", "title"]
    assert rows.arrow().column_names == ["id", "title"]


def test_rows_arrow(db_app: tidal.App, docs: list[Doc]) -> None:
    table = db_app.sql("SELECT id, title, views, score FROM doc ORDER BY id").arrow()
    assert isinstance(table, pa.Table)
    assert table.column_names == ["id", "title", "views", "score"]
    assert table.num_rows == 3
    assert table.column("views").to_pylist() == [10, 30, 20]
    assert pa.types.is_integer(table.schema.field("views").type)
    assert pa.types.is_floating(table.schema.field("score").type)
    assert table.column("title").to_pylist() == ["alpha", "beta", "gamma"]


def test_rows_df(db_app: tidal.App, docs: list[Doc]) -> None:
    df = db_app.sql("SELECT id, title, views, score, tag FROM doc ORDER BY id").df()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["id", "title", "views", "score", "tag"]
    assert df["views"].tolist() == [10, 30, 20]
    assert df["score"].sum() == pytest.approx(4.5)
    assert df["tag"].tolist()[:2] == ["x", "y"] and df["tag"].isna().tolist() == [False, False, True]


def test_bytes_and_vectors_come_back_as_bytes(db_app: tidal.App) -> None:
    import numpy as np

    class Blob(tidal.Record):
        data: bytes
        vec: tidal.Vector

    vec = np.array([1.0, 2.0], dtype=np.float32)
    db_app.insert(Blob(data=b"\x00\xff", vec=vec))
    row = db_app.sql("SELECT data, vec FROM blob").tuples()[0]
    assert bytes(row[0]) == b"\x00\xff"
    assert np.array_equal(np.frombuffer(bytes(row[1]), dtype=np.float32), vec)
    assert db_app.sql("SELECT data FROM blob").arrow().column("data").to_pylist() == [b"\x00\xff"]
