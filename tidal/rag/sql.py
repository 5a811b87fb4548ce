"""Text-to-SQL over the app's relations: tabular retrieval that can only read.

::

    sql = rag.TextToSQL(app, llm, tables=[Sale, Product, Store])
    answer = sql.ask("How many units of Fruity Fedora were sold in the last 7 days?")
    answer.sql, answer.columns, answer.rows, answer.run_id
    answer.correct("SELECT ...")      # or app.feedback(answer.run_id, label="correction", comment="SELECT ...")

Each ``ask`` is a serve run of the component ``TextToSQL:<name>`` (flow
``ask``): the runs log keeps the question, the SQL and the row count (or the
refusal), and the model call is in ``model_calls`` under that run. The prompt
is built from the tables' schemas (names, column types, field descriptions,
a few sample rows), the database's dialect, and the stored examples most
like the question. The model's SQL is checked by
:func:`tidal.rag.sql_guard.check` and run by
:func:`tidal.rag.sql_exec.run_read_only`.

Corrections are examples: ``answer.correct(sql)``, or feedback on the run
with ``label="correction"`` and the SQL as ``comment``, stores a row of the
relation ``sql_examples`` (question, SQL), checked by the guard first; a
relation trigger on ``feedback`` turns such feedback into an example in the
background (``flush()`` waits for it).
"""

from __future__ import annotations

import ast
import decimal
import functools
import inspect
import logging
import math
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import context
from ..relations.builtin import Feedback, Run
from ..relations.record import Record
from ..relations.rows import Rows
from .sql_errors import SQLAnswerError
from .sql_exec import run_read_only
from .sql_guard import check

if TYPE_CHECKING:
    from ..app import App
    from ..instance import Instance

log = logging.getLogger(__name__)

COMPONENT_PREFIX = "TextToSQL:"
"""Each TextToSQL is the component ``TextToSQL:<name>``."""
ASK = "ask"
"""The flow every question runs as."""
LEARN = "learn_correction"
"""The flow of the feedback trigger that stores corrections."""
EXAMPLES_INSTANCE = "examples"
CORRECTION_LABEL = "correction"
"""Feedback with this label (and the SQL as its comment) is a correction."""
MAX_SAMPLE_CHARS = 40
"""A sample value in the prompt is cut to this many characters."""
_FENCE = re.compile(r"```[ \t]*(?:sql|postgresql|postgres|sqlite)?[ \t]*\n?(.*?)```", re.IGNORECASE | re.DOTALL)
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    {"a", "an", "and", "are", "by", "did", "do", "does", "for", "from", "how", "in", "is", "it", "many", "much",
     "of", "on", "or", "per", "the", "to", "was", "were", "what", "which", "who", "with"}
)  # fmt: skip


class SQLExample(Record):
    """A question and the SQL that answers it: a correction given as
    feedback, or an example given to :class:`TextToSQL`."""

    __relation__ = "sql_examples"

    asker: str
    """The name of the TextToSQL it belongs to."""
    question: str
    sql: str
    source: str = CORRECTION_LABEL
    """``correction`` (from feedback) or ``example`` (given in code)."""
    run_id: str | None = None
    """The run it corrects."""


@dataclass
class SQLAnswer:
    """The answer to a question: the SQL that ran and its rows."""

    question: str
    sql: str
    """The checked SQL that ran (the model's, as the guard wrote it back)."""
    columns: list[str]
    rows: Rows
    """At most ``max_rows`` rows (dicts; ``.tuples()``, ``.df()``, ``.arrow()``)
    of JSON values: numbers, text, None; dates and times as ISO text."""
    run_id: str | None
    """The run in the runs log: give feedback on it."""
    truncated: bool = False
    """There were more rows than ``max_rows``."""
    model_sql: str = ""
    """The SQL as the model wrote it (fence removed)."""
    tables: tuple[str, ...] = ()
    elapsed_ms: float = 0.0
    """Time the query ran (not the model call)."""
    examples: list[SQLExample] = field(default_factory=list)
    """The examples the prompt showed."""
    asker: TextToSQL | None = field(default=None, repr=False, compare=False)

    def correct(self, sql: str) -> SQLExample:
        """Say what SQL should have answered the question: stored as an
        example (after the guard accepted it) and as feedback on the run."""
        if self.asker is None or self.run_id is None:
            raise SQLAnswerError("this answer has no run to correct (the runs log is off)")
        return self.asker.correct(self.run_id, sql)


class TextToSQL:
    """Questions in words answered with SQL over ``tables``, read-only.

    ``llm``: a :class:`tidal.models.Model` (``models.connect(url, app=app)``).
    ``tables``: the Record classes the SQL may read (nothing else).
    ``max_rows`` / ``timeout_s``: limits of each query. ``examples``:
    ``(question, sql)`` pairs (or dicts) shown when similar questions are
    asked. ``sample_rows``: rows of each table shown in the prompt.
    ``k_examples``: how many similar examples the prompt shows.
    ``embedder``: anything with ``embed(texts) -> array`` to rank examples
    by cosine instead of shared words."""

    def __init__(
        self,
        app: App,
        llm: Any,
        tables: Sequence[type[Record]],
        *,
        name: str = "sql",
        max_rows: int = 200,
        timeout_s: float = 2.0,
        examples: Iterable[tuple[str, str] | Mapping[str, str]] = (),
        sample_rows: int = 3,
        k_examples: int = 3,
        embedder: Any = None,
        instructions: str = "",
    ) -> None:
        if not tables:
            raise ValueError("TextToSQL needs at least one table (a tidal.Record class)")
        for cls in tables:
            if not (isinstance(cls, type) and issubclass(cls, Record)):
                raise TypeError(f"tables are tidal.Record classes, got {cls!r}")
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ValueError(f"max_rows must be a whole number >= 1, got {max_rows!r}")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 0 < timeout_s < math.inf:
            raise ValueError(f"timeout_s must be a number of seconds > 0, got {timeout_s!r}")
        self.app = app
        self.llm = llm
        self.name = name
        self.tables = list(tables)
        self.max_rows = max_rows
        self.timeout_s = float(timeout_s)
        self.sample_rows = sample_rows
        self.k_examples = k_examples
        self.embedder = embedder
        self.instructions = instructions
        relations: list[type[Record]] = [*self.tables, SQLExample]
        for relation in relations:
            app.db.register(relation)
        self.table_names = [cls.relation() for cls in self.tables]
        self.given = [self._given(example) for example in examples]
        self.component = app.component(COMPONENT_PREFIX + name, cache_ttl=0)
        self.component.serve(ASK)(self._serve)
        self.component.update(LEARN, on=Feedback, events=["insert"], instance=EXAMPLES_INSTANCE)(self._learn)
        self._asking: Instance | None = None

    @property
    def dialect(self) -> str:
        """The database's dialect: ``sqlite`` or ``postgresql``."""
        return str(self.app.db.dialect)

    # -- asking -------------------------------------------------------------

    def ask(self, question: str) -> SQLAnswer:
        """Answer ``question``: the model writes SQL, the guard checks it, it
        runs read-only. Raises UnsafeSQLError (refused; nothing ran),
        SQLTimeoutError or SQLExecutionError, each with the ``run_id``."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        result = self._instance().run(ASK, props={"question": question}, ignore_cache=True)
        return SQLAnswer(
            question=question,
            sql=result["sql"],
            columns=result["columns"],
            rows=Rows(result["columns"], [tuple(r) for r in result["rows"]]),
            run_id=result["run_id"],
            truncated=result["truncated"],
            model_sql=result["model_sql"],
            tables=tuple(result["tables"]),
            elapsed_ms=result["elapsed_ms"],
            examples=[SQLExample(**e) for e in result["examples"]],
            asker=self,
        )

    def check(self, sql: str) -> str:
        """The SQL the guard makes of ``sql`` (raises UnsafeSQLError)."""
        return check(sql, dialect=self.dialect, tables=self.table_names).sql

    def prompt(self, question: str) -> tuple[list[dict[str, str]], list[SQLExample]]:
        """The messages sent to the model for ``question``, and the examples
        they show."""
        examples = self.similar_examples(question)
        dialect = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(self.dialect, self.dialect)
        stored_as = (
            " as text 'YYYY-MM-DD HH:MM:SS.ffffff': compare them with datetime('now', '-7 days')."
            if dialect == "SQLite"
            else "."
        )
        parts = [
            f"You write one {dialect} SELECT query that answers the user's question from the tables below.",
            "Reply with the query only, in a ```sql code block. The query must only read: no INSERT, UPDATE, "
            "DELETE or DDL, no other tables, no parameters (write values into the query).",
            f"Now is {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC. Datetimes are stored in UTC{stored_as}",
        ]
        if self.instructions:
            parts.append(self.instructions)
        parts.append("Tables:\n\n" + "\n\n".join(self.describe(cls) for cls in self.tables))
        if examples:
            parts.append(
                "Questions answered before, with their correct SQL:\n\n"
                + "\n\n".join(f"Question: {e.question}\nSQL:\n```sql\n{e.sql}\n```" for e in examples)
            )
        return [{"role": "system", "content": "\n\n".join(parts)}, {"role": "user", "content": question}], examples

    def describe(self, cls: type[Record]) -> str:
        """One table as the prompt shows it: columns with types and
        descriptions, then sample rows."""
        relation = self.app.db.relation(cls)
        docs = field_docs(cls)
        own_doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
        lines = [f"Table {cls.relation()}" + (f": {own_doc.splitlines()[0]}" if own_doc else "")]
        dialect = self.app.db.engine.dialect
        for column in relation.table.columns:
            kind = column.type.compile(dialect=dialect)
            note = docs.get(column.name, "")
            key = " PRIMARY KEY" if column.primary_key else ""
            lines.append(f"  {column.name} {kind}{key}" + (f"  -- {note}" if note else ""))
        if self.sample_rows > 0:
            rows = self.app.db.sql(f'SELECT * FROM "{cls.relation()}" LIMIT {int(self.sample_rows)}')
            if len(rows):
                lines.append(f"  Sample rows ({' | '.join(rows.columns)}):")
                lines.extend("    " + " | ".join(_sample(v) for v in row) for row in rows.tuples())
        return "\n".join(lines)

    # -- examples -----------------------------------------------------------

    def examples(self) -> list[SQLExample]:
        """The examples given in code, then the stored corrections (oldest first)."""
        stored = self.app.query(SQLExample, {"asker": self.name}, order_by="created_at")
        return [*self.given, *stored]

    def similar_examples(self, question: str, k: int | None = None) -> list[SQLExample]:
        """The ``k`` examples most like ``question`` (shared words, or cosine
        of the embedder's vectors), most similar first; none that share
        nothing with it."""
        k = self.k_examples if k is None else k
        pool = self.examples()
        if not pool or k <= 0:
            return []
        if self.embedder is not None:
            vectors = np.asarray(self.embedder.embed([question, *[e.question for e in pool]]), dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1)
            norms[norms == 0] = 1.0
            unit = vectors / norms[:, None]
            scores = [float(s) for s in unit[1:] @ unit[0]]
        else:
            words = _words(question)
            scores = [_overlap(words, _words(e.question)) for e in pool]
        # Later examples win ties: a newer correction supersedes an older one.
        ranked = sorted(range(len(pool)), key=lambda i: (scores[i], i), reverse=True)
        return [pool[i] for i in ranked[:k] if scores[i] > 0]

    def correct(self, run_id: str, sql: str) -> SQLExample:
        """Store ``sql`` as the answer to the question of run ``run_id``
        (after the guard accepted it), and as feedback on the run."""
        question = self._question_of(run_id)
        checked = self.check(sql)
        # The example first: the feedback fires the trigger that stores it
        # too, and an upsert of the same id racing this one could fail.
        example = self._store(run_id, question, checked)
        self.app.feedback(run_id, label=CORRECTION_LABEL, comment=sql)
        return example

    def flush(self) -> None:
        """Wait until corrections given as feedback are stored as examples."""
        self.component(EXAMPLES_INSTANCE).flush_update()

    # -- the component's ops ------------------------------------------------

    def _serve(self, state: Any, props: Any) -> dict[str, Any]:
        run = context.run()
        run_id = run.id if run is not None and run.id else None
        question = props["question"]
        messages, examples = self.prompt(question)
        reply = self.llm.chat(messages, temperature=0)
        model_sql = extract_sql(reply.text)
        try:
            checked = check(model_sql, dialect=self.dialect, tables=self.table_names)
            fetched = run_read_only(
                self.app.db.engine,
                self.app.db.connect,
                checked.sql,
                tables=[*self.table_names, *checked.ctes],
                max_rows=self.max_rows,
                timeout_s=self.timeout_s,
            )
        except SQLAnswerError as exc:
            exc.run_id = run_id
            raise
        return {
            "question": question,
            "sql": checked.sql,
            "model_sql": model_sql,
            "tables": list(checked.tables),
            "columns": fetched.columns,
            "rows": [[json_value(v) for v in row] for row in fetched.rows],
            "row_count": len(fetched.rows),
            "truncated": fetched.truncated,
            "elapsed_ms": round(fetched.elapsed_ms, 3),
            "examples": [e.model_dump(include={"asker", "question", "sql", "source", "run_id"}) for e in examples],
            "run_id": run_id,
        }

    def _learn(self, state: Any, props: Any) -> None:
        feedback = props["record"]
        if (
            not isinstance(feedback, Feedback)
            or feedback.component != self.component.name
            or feedback.label != CORRECTION_LABEL
            or not feedback.comment
        ):
            return None
        try:
            question = self._question_of(feedback.run_id)
            checked = self.check(feedback.comment)
        except (SQLAnswerError, LookupError) as exc:
            log.warning("correction of run %s not stored as an example: %s", feedback.run_id, exc)
            return None
        known = self.app.get(SQLExample, self._example_id(feedback.run_id))
        if known is None or known.sql != checked:
            self._store(feedback.run_id, question, checked)
        return None

    # -- helpers ------------------------------------------------------------

    def _instance(self) -> Instance:
        if self._asking is None:
            self._asking = self.component("default")
        return self._asking

    def _question_of(self, run_id: str) -> str:
        self.app.flush_runs(always=True)
        run = self.app.get(Run, run_id)
        if run is None or run.component != self.component.name or run.flow != ASK:
            raise SQLAnswerError(f"run {run_id!r} is not a question asked of TextToSQL {self.name!r}")
        props = run.props if isinstance(run.props, Mapping) else {}
        question = props.get("question")
        if not isinstance(question, str):
            raise SQLAnswerError(f"run {run_id!r} has no question in its props")
        return question

    def _store(self, run_id: str, question: str, sql: str) -> SQLExample:
        example = SQLExample(id=self._example_id(run_id), asker=self.name, question=question, sql=sql, run_id=run_id)
        return self.app.upsert(example)

    def _example_id(self, run_id: str) -> str:
        return f"{self.name}:{run_id}"

    def _given(self, example: tuple[str, str] | Mapping[str, str]) -> SQLExample:
        if isinstance(example, Mapping):
            question, sql = example["question"], example["sql"]
        else:
            question, sql = example
        return SQLExample(asker=self.name, question=question, sql=self.check(sql), source="example")

    def close(self) -> None:
        """Close the instance this uses to ask."""
        if self._asking is not None:
            self._asking.close()
            self._asking = None

    def __repr__(self) -> str:
        return f"<TextToSQL {self.name!r} over {', '.join(self.table_names)} ({self.dialect})>"


def extract_sql(text: str) -> str:
    """The SQL in a model's reply: the first fenced code block if there is
    one, else the whole reply (stripped)."""
    match = _FENCE.search(text or "")
    return (match.group(1) if match else text or "").strip()


@functools.cache
def field_docs(cls: type[Record]) -> dict[str, str]:
    """Each field's description: ``Field(description=...)``, else the
    docstring written under it in the class body."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, Record)) or klass is Record:
            continue
        docs.update(_attribute_docstrings(klass))
    for name, info in cls.model_fields.items():
        if info.description:
            docs[name] = info.description
    return {name: " ".join(text.split()) for name, text in docs.items()}


def _attribute_docstrings(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        body = ast.parse(source).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return {}
    if not isinstance(body, ast.ClassDef):
        return {}
    docs: dict[str, str] = {}
    for stmt, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[stmt.target.id] = following.value.value
    return docs


def json_value(value: Any) -> Any:
    """A value of a row as JSON has it, the same on SQLite and PostgreSQL:
    numbers (a whole Decimal as an int), text, None; dates and times as ISO
    text, bytes as hex, anything else as its text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _sample(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= MAX_SAMPLE_CHARS else text[: MAX_SAMPLE_CHARS - 1] + "…"


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def _overlap(a: set[str], b: set[str]) -> float:
    """Cosine of two sets of words."""
    if not a or not b:
        return 0.0
    return len(a & b) / math.sqrt(len(a) * len(b))
