"""TextToSQL end to end through the stand-in model, on SQLite and on
PostgreSQL: the prompt, the answer and its run, the limits, corrections
that become examples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tidal
from tidal import models, rag
from tidal.rag.sql_exec import run_read_only

from .shop import TABLES, seed

FEDORA_SQL = {
    "sqlite": (
        "SELECT SUM(s.units) AS units FROM sale s JOIN product p ON p.id = s.product_id "
        "WHERE p.name = 'Fruity Fedora' AND s.sold_at >= datetime('now', '-7 days')"
    ),
    "postgresql": (
        "SELECT SUM(s.units) AS units FROM sale s JOIN product p ON p.id = s.product_id "
        "WHERE p.name = 'Fruity Fedora' AND s.sold_at >= now() - interval '7 days'"
    ),
}
FEDORA_7_DAYS = sum(1 + (day + 0) % 4 for day in range(7))
"""What shop.seed sold of p1 in the last 7 days (the sale of day 7 is 7 days and an hour ago)."""


@pytest.fixture
def llm(db_app: tidal.App, standin: Any) -> Iterator[Any]:
    model = models.connect(standin.base_url + "#stand-in", app=db_app, max_retries=0)
    yield model
    model.close()


@pytest.fixture
def asker(db_app: tidal.App, llm: Any) -> Iterator[rag.TextToSQL]:
    seed(db_app)
    sql = rag.TextToSQL(db_app, llm, TABLES, max_rows=20, timeout_s=1.0)
    yield sql
    sql.close()


def system_prompt(standin: Any) -> str:
    messages = standin.requests()[-1]["body"]["messages"]
    assert messages[-1]["role"] == "user"
    return str(messages[0]["content"])


def test_ask_answers_with_rows_and_the_sql(db_app: tidal.App, asker: rag.TextToSQL, standin: Any) -> None:
    fenced = f"Here you go:\n```sql\n{FEDORA_SQL[db_app.db.dialect]}\n```\nThat sums the units."
    standin.script([{"match": "Fruity Fedora", "answer": fenced}])
    answer = asker.ask("How many units of Fruity Fedora were sold in the last 7 days?")
    assert answer.columns == ["units"]
    assert answer.rows.scalar() == FEDORA_7_DAYS
    assert answer.model_sql == FEDORA_SQL[db_app.db.dialect]
    assert answer.sql.startswith("SELECT SUM(s.units) AS units FROM sale AS s")
    assert answer.tables == ("product", "sale") and not answer.truncated
    # The ask is a run: question, SQL and row count are in the runs log, the model call under it.
    run = db_app.sql("SELECT component, flow, status, props, result FROM runs WHERE id = :id", {"id": answer.run_id})[0]
    assert (run["component"], run["flow"], run["status"]) == ("TextToSQL:sql", "ask", "ok")
    props, result = (json.loads(v) if isinstance(v, str) else v for v in (run["props"], run["result"]))
    assert props == {"question": answer.question}
    assert (result["sql"], result["row_count"], result["truncated"]) == (answer.sql, 1, False)
    calls = db_app.sql("SELECT count(*) AS n FROM model_calls WHERE run_id = :id", {"id": answer.run_id})
    assert calls.scalar() == 1


def test_prompt_shows_schema_descriptions_samples_and_dialect(
    db_app: tidal.App, asker: rag.TextToSQL, standin: Any
) -> None:
    standin.script([{"match": ".", "answer": "SELECT 1 AS one"}])
    asker.ask("anything")
    prompt = system_prompt(standin)
    dialect = "SQLite" if db_app.db.dialect == "sqlite" else "PostgreSQL"
    assert f"one {dialect} SELECT query" in prompt
    assert "Table sale: Units of one product sold in one store at one time." in prompt
    assert "Table product: A product the shop sells." in prompt
    assert "the product's name, e.g. 'Fruity Fedora'" in prompt  # Field(description=)
    assert "The product sold (product.id)." in prompt  # an attribute docstring
    assert "units BIGINT" in prompt
    assert "Fruity Fedora" in prompt.split("Table product")[1]  # a sample row
    assert "secret" not in prompt and "hunter2" not in prompt


def test_row_limit_flags_truncation(asker: rag.TextToSQL, standin: Any) -> None:
    standin.script([{"match": ".", "answer": "SELECT id FROM sale ORDER BY id"}])
    answer = asker.ask("every sale")
    assert len(answer.rows) == 20 and answer.truncated


def test_timeout_stops_a_runaway_query(asker: rag.TextToSQL, standin: Any) -> None:
    forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"
    standin.script([{"match": ".", "answer": forever}])
    with pytest.raises(rag.SQLTimeoutError) as caught:
        asker.ask("count forever")
    assert caught.value.run_id


def test_database_errors_are_reported_with_the_run(db_app: tidal.App, asker: rag.TextToSQL, standin: Any) -> None:
    standin.script([{"match": ".", "answer": "SELECT no_such_column FROM sale"}])
    with pytest.raises(rag.SQLExecutionError, match="no_such_column") as caught:
        asker.ask("a column that is not there")
    status = db_app.sql("SELECT status FROM runs WHERE id = :id", {"id": caught.value.run_id}).scalar()
    assert status == "error"


def test_a_correction_appears_in_the_next_prompt_for_a_similar_question(
    db_app: tidal.App, asker: rag.TextToSQL, standin: Any
) -> None:
    wrong = "SELECT count(*) AS units FROM sale"
    standin.script([{"match": ".", "answer": wrong}])
    answer = asker.ask("How many units of Fruity Fedora were sold in the last 7 days?")
    assert answer.examples == []
    right = FEDORA_SQL[db_app.db.dialect]
    example = answer.correct(right)
    assert example.question == answer.question and example.sql == asker.check(right)
    feedback = db_app.sql("SELECT label, comment FROM feedback WHERE run_id = :id", {"id": answer.run_id})
    assert feedback[0] == {"label": "correction", "comment": right}

    standin.clear()
    standin.script([{"match": ".", "answer": right}])
    later = asker.ask("How many units of Plain Cap were sold in the last 7 days?")
    prompt = system_prompt(standin)
    assert "Questions answered before" in prompt
    assert "Question: How many units of Fruity Fedora were sold in the last 7 days?" in prompt
    assert example.sql in prompt
    assert [e.sql for e in later.examples] == [example.sql]
    # An unrelated question is not shown the example.
    asker.ask("list the cities")
    assert "Questions answered before" not in system_prompt(standin)


def test_feedback_with_corrected_sql_becomes_an_example(db_app: tidal.App, asker: rag.TextToSQL, standin: Any) -> None:
    standin.script([{"match": ".", "answer": "SELECT city FROM store"}])
    answer = asker.ask("Which stores sold Woolly Beanie?")
    right = (
        "SELECT DISTINCT st.city FROM store st JOIN sale s ON s.store_id = st.id "
        "JOIN product p ON p.id = s.product_id WHERE p.name = 'Woolly Beanie'"
    )
    db_app.feedback(answer.run_id, label="correction", comment=right)
    db_app.feedback(answer.run_id, label="correction", comment="DELETE FROM sale")  # refused, not stored
    db_app.feedback(answer.run_id, score=1.0)  # not a correction
    asker.flush()
    stored = db_app.query(rag.SQLExample)
    assert [(e.question, e.run_id) for e in stored] == [(answer.question, answer.run_id)]
    assert "DELETE" not in stored[0].sql and "Woolly Beanie" in stored[0].sql
    assert [e.sql for e in asker.similar_examples("Which stores sold Plain Cap?")] == [stored[0].sql]


def test_unsafe_corrections_and_examples_are_refused(db_app: tidal.App, asker: rag.TextToSQL, llm: Any,
                                                      standin: Any) -> None:  # fmt: skip
    standin.script([{"match": ".", "answer": "SELECT 1 AS one"}])
    answer = asker.ask("one")
    with pytest.raises(rag.UnsafeSQLError, match="DROP"):
        answer.correct("SELECT 1; DROP TABLE sale")
    assert db_app.query(rag.SQLExample) == []
    with pytest.raises(rag.UnsafeSQLError, match="secret"):
        rag.TextToSQL(db_app, llm, TABLES, name="other", examples=[("tokens?", "SELECT token FROM secret")])


def test_given_examples_are_shown_for_similar_questions(db_app: tidal.App, llm: Any, standin: Any) -> None:
    seed(db_app)
    given = [
        ("Revenue per store", "SELECT st.city, SUM(s.units * p.price) FROM sale s JOIN product p "
                              "ON p.id = s.product_id JOIN store st ON st.id = s.store_id GROUP BY st.city"),
        {"question": "How many products are there?", "sql": "SELECT count(*) FROM product"},
    ]  # fmt: skip
    sql = rag.TextToSQL(db_app, llm, TABLES, name="given", examples=given, k_examples=1)
    standin.script([{"match": ".", "answer": "SELECT 1 AS one"}])
    answer = sql.ask("What is the revenue of each store?")
    assert [e.question for e in answer.examples] == ["Revenue per store"]
    assert "Question: Revenue per store" in system_prompt(standin)
    sql.close()


def test_embedder_ranks_examples(db_app: tidal.App, llm: Any) -> None:
    seed(db_app)
    given = [("total units sold", "SELECT SUM(units) FROM sale"), ("list cities", "SELECT city FROM store")]
    sql = rag.TextToSQL(db_app, llm, TABLES, name="embedded", examples=given, embedder=llm)
    assert sql.similar_examples("which cities", k=1)[0].question == "list cities"
    sql.close()


def test_memory_store_uses_the_one_in_memory_connection_read_only(tmp_path: Path, standin: Any) -> None:
    app = tidal.App("mem", store="memory://", home=tmp_path / "home")
    llm = models.connect(standin.base_url + "#stand-in", app=app, max_retries=0)
    try:
        seed(app)
        sql = rag.TextToSQL(app, llm, TABLES)
        standin.script([{"match": "count", "answer": "SELECT count(*) AS n FROM sale"}])
        assert sql.ask("count the sales").rows.scalar() == 60
        # The connection is writable again afterwards (the app's own writes).
        app.insert(tidal.Feedback(run_id="x"))
        with pytest.raises(rag.SQLExecutionError):
            run_read_only(app.db.engine, app.db.connect, "DELETE FROM sale", tables=["sale"], max_rows=1, timeout_s=1)
        assert app.sql("SELECT count(*) FROM sale").scalar() == 60
        sql.close()
    finally:
        llm.close()
        app.close()
