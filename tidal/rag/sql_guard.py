"""The guard of text-to-SQL: SQL is accepted only when it is provably a read
of the allowed tables.

``check(sql, dialect=, tables=)`` parses the text with sqlglot in the
database's dialect and accepts it only if every part of it is on an
allow-list:

* exactly one statement, and that statement a query: ``SELECT``, or
  ``UNION`` / ``INTERSECT`` / ``EXCEPT`` of them, with ``WITH`` allowed;
* every node of the syntax tree one of :data:`ALLOWED_NODES` (column
  references, literals, operators, joins, grouping, ordering, windows,
  subqueries, CTEs...): a write anywhere in the tree (``WITH x AS (DELETE
  ... RETURNING *)``), ``SELECT ... INTO``, ``FOR UPDATE``, a parameter, a
  statement sqlglot cannot model (it becomes a ``Command``) is refused;
* every function on :data:`ALLOWED_FUNCTIONS` (aggregates, window
  functions, string, date and math basics) or, for functions sqlglot knows
  only by name, :data:`ALLOWED_NAMED_FUNCTIONS` of that dialect: never
  ``load_extension``, ``pg_sleep``, ``randomblob``, ``nextval``,
  ``set_config``, ``pg_read_file``, ``dblink``...;
* every table reference a bare name (no schema: no ``main.sale``, no
  ``pg_catalog.pg_user``) that is either an allowed table or a CTE visible
  at that point (CTE scoping is followed exactly: a CTE is visible in the
  statement that defines it, to the CTEs after it, and to itself only under
  ``RECURSIVE``; a name outside that scope is a real table and must be
  allowed); names are compared as the database folds them, and a name with
  non-ASCII characters is refused by name (homoglyphs).

What runs is not the model's text but the checked tree written back as SQL
(``Checked.sql``, comments dropped): nothing the parser did not see can
reach the database.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from .sql_errors import UnsafeSQLError

DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres"}
"""SQLAlchemy dialect name -> sqlglot dialect name."""

QUERY_ROOTS: tuple[type[exp.Expression], ...] = (exp.Select, exp.Union, exp.Intersect, exp.Except)

ALLOWED_NODES: frozenset[type[exp.Expression]] = frozenset(
    {
        # queries and their clauses
        exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.With, exp.CTE,
        exp.From, exp.Join, exp.Where, exp.Group, exp.Having, exp.Order, exp.Ordered,
        exp.Limit, exp.Offset, exp.Fetch, exp.Distinct, exp.Values,
        exp.Window, exp.WindowSpec, exp.Filter, exp.WithinGroup,
        # names and values
        exp.Table, exp.TableAlias, exp.Alias, exp.Column, exp.Identifier, exp.Star,
        exp.Literal, exp.Null, exp.Boolean, exp.Tuple, exp.Paren, exp.Var, exp.Interval,
        exp.DataType, exp.DataTypeParam,
        # operators
        exp.And, exp.Or, exp.Not, exp.Neg, exp.Xor,
        exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ,
        exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod, exp.DPipe,
        exp.Between, exp.In, exp.Is, exp.Like, exp.ILike, exp.Glob, exp.Escape, exp.Collate,
        exp.Exists, exp.Any, exp.All,
    }
)  # fmt: skip
"""Syntax nodes a query may contain (functions are checked apart)."""

ALLOWED_FUNCTIONS: frozenset[type[exp.Expression]] = frozenset(
    {
        # aggregates
        exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.GroupConcat, exp.ArrayAgg,
        exp.Stddev, exp.StddevPop, exp.StddevSamp, exp.Variance, exp.VariancePop,
        exp.LogicalAnd, exp.LogicalOr, exp.PercentileCont, exp.PercentileDisc,
        # window functions
        exp.RowNumber, exp.Rank, exp.DenseRank, exp.PercentRank, exp.CumeDist, exp.Ntile,
        exp.Lag, exp.Lead, exp.FirstValue, exp.LastValue, exp.NthValue,
        # conditionals and casts
        exp.Case, exp.If, exp.Coalesce, exp.Nullif, exp.Cast, exp.TryCast, exp.Least, exp.Greatest,
        # strings
        exp.Lower, exp.Upper, exp.Length, exp.Substring, exp.Trim, exp.Replace, exp.StrPosition,
        exp.Concat, exp.ConcatWs, exp.Left, exp.Right, exp.SplitPart, exp.Initcap,
        # math
        exp.Abs, exp.Round, exp.Ceil, exp.Floor, exp.Trunc, exp.Sign, exp.Sqrt, exp.Pow,
        exp.Exp, exp.Ln, exp.Log,
        # dates and times
        exp.Date, exp.TimeToStr, exp.TsOrDsToTimestamp, exp.StrToDate, exp.UnixToTime,
        exp.Extract, exp.TimestampTrunc, exp.DateTrunc,
        exp.CurrentDate, exp.CurrentTimestamp, exp.CurrentTime,
    }
)  # fmt: skip
"""Functions sqlglot models, allowed wherever they appear."""

ALLOWED_NAMED_FUNCTIONS: dict[str, frozenset[str]] = {
    "sqlite": frozenset({"date", "datetime", "time", "julianday", "unixepoch", "strftime", "total", "ifnull", "iif"}),
    "postgres": frozenset({"age", "make_date", "date_part", "to_char"}),
}
"""Functions sqlglot knows only by name (``Anonymous``), per dialect, lower case."""

ALLOWED_TYPES: frozenset[Any] = frozenset(
    {
        exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR,
        exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT,
        exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE, exp.DataType.Type.DECIMAL,
        exp.DataType.Type.BOOLEAN, exp.DataType.Type.DATE, exp.DataType.Type.DATETIME,
        exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.INTERVAL,
    }
)  # fmt: skip
"""Types a CAST may name (no ``regclass``, no ``regproc``: catalog look-ups)."""

_STATEMENT_WORDS: dict[type[exp.Expression], str] = {
    exp.Insert: "INSERT", exp.Update: "UPDATE", exp.Delete: "DELETE", exp.Merge: "MERGE",
    exp.Create: "CREATE", exp.Drop: "DROP", exp.Alter: "ALTER", exp.Attach: "ATTACH",
    exp.Detach: "DETACH", exp.Pragma: "PRAGMA", exp.Copy: "COPY", exp.Set: "SET",
    exp.Transaction: "BEGIN", exp.Commit: "COMMIT", exp.Rollback: "ROLLBACK", exp.Use: "USE",
    exp.Into: "SELECT ... INTO (which creates a table)", exp.Lock: "FOR UPDATE / FOR SHARE (which locks rows)",
    exp.Placeholder: "a parameter placeholder", exp.Parameter: "a parameter placeholder",
    exp.Returning: "RETURNING (part of a write)",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Checked:
    """SQL the guard accepted."""

    sql: str
    """The checked tree written back as SQL in the dialect, without
    comments: what is run."""
    tables: tuple[str, ...]
    """The allowed tables it reads, sorted."""
    ctes: tuple[str, ...] = ()
    """The names its CTEs define, sorted (SQLite's authorizer sees reads of
    them as reads of tables)."""


def check(sql: str, *, dialect: str, tables: Collection[str]) -> Checked:
    """Accept ``sql`` if it is one query over ``tables`` (relation names)
    using only safe functions, or raise UnsafeSQLError saying why.
    ``dialect`` is SQLAlchemy's name of the database (``sqlite`` or
    ``postgresql``)."""
    read = DIALECTS.get(dialect)
    if read is None:
        raise UnsafeSQLError(f"text-to-SQL supports {', '.join(sorted(DIALECTS))} databases, not {dialect!r}", sql)
    if not isinstance(sql, str) or not sql.strip():
        raise UnsafeSQLError("the model gave no SQL", sql if isinstance(sql, str) else repr(sql))
    try:
        statements = [s for s in sqlglot.parse(sql, read=read) if s is not None]
    except SqlglotError as exc:
        raise UnsafeSQLError(f"refused: the SQL does not parse as {read} SQL ({_first_line(exc)})", sql) from exc
    if len(statements) != 1:
        raise UnsafeSQLError(
            f"refused: {len(statements)} statements; exactly one SELECT is allowed"
            + (f" (then: {', '.join(_statement_word(s) for s in statements[1:])})" if statements else ""),
            sql,
        )
    tree = statements[0]
    if not isinstance(tree, QUERY_ROOTS):
        raise UnsafeSQLError(f"refused: only a SELECT is allowed; this statement is {_statement_word(tree)}", sql)
    allowed = {_fold(name, quoted=False, dialect=read) for name in tables}
    read_tables: set[str] = set()
    ctes: set[str] = set()
    for node, visible in _walk(tree, frozenset(), read):
        _check_node(node, read, sql)
        if isinstance(node, exp.CTE):
            ctes.add(_fold(node.alias, quoted=_alias_quoted(node), dialect=read))
        if isinstance(node, exp.Table):
            read_tables.update(_check_table(node, visible, allowed, read, sql))
    try:
        text = tree.sql(dialect=read, comments=False)
    except SqlglotError as exc:  # pragma: no cover - sqlglot writes back what it parsed
        raise UnsafeSQLError(f"refused: the SQL cannot be written back ({_first_line(exc)})", sql) from exc
    return Checked(text, tuple(sorted(read_tables)), tuple(sorted(ctes)))


def _walk(node: exp.Expression, ctes: frozenset[str], dialect: str) -> Iterator[tuple[exp.Expression, frozenset[str]]]:
    """Every node under ``node`` (itself first), each with the CTE names
    visible where it stands."""
    yield node, ctes
    with_ = node.args.get("with_", node.args.get("with"))
    inner = ctes
    if isinstance(with_, exp.With):
        names = [_fold(cte.alias, quoted=_alias_quoted(cte), dialect=dialect) for cte in with_.expressions]
        recursive = bool(with_.args.get("recursive"))
        yield with_, ctes
        for i, cte in enumerate(with_.expressions):
            # A CTE sees those before it, and itself only when recursive.
            sees = ctes | frozenset(names[: i + 1] if recursive else names[:i])
            yield from _walk(cte, sees, dialect)
        inner = ctes | frozenset(names)
    for key, value in node.args.items():
        if value is with_ and with_ is not None:
            continue
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, exp.Expression):
                yield from _walk(child, inner, dialect)
        del key


def _check_node(node: exp.Expression, dialect: str, sql: str) -> None:
    kind = type(node)
    if kind in ALLOWED_NODES or kind in ALLOWED_FUNCTIONS:
        if kind is exp.DataType and node.this not in ALLOWED_TYPES:
            raise UnsafeSQLError(f"refused: casts to {node.sql(dialect=dialect)} are not allowed", sql)
        return
    if kind is exp.Anonymous:
        name = str(node.name).lower()
        if name in ALLOWED_NAMED_FUNCTIONS[dialect]:
            return
        raise UnsafeSQLError(f"refused: function {node.name}() is not on the allowed list", sql)
    if kind is exp.CTE or kind is exp.TableAlias:
        return
    if isinstance(node, exp.Func):
        raise UnsafeSQLError(f"refused: function {_function_name(node)}() is not on the allowed list", sql)
    raise UnsafeSQLError(f"refused: {_statement_word(node)} is not allowed in a read-only query", sql)


def _check_table(node: exp.Table, visible: frozenset[str], allowed: set[str], dialect: str, sql: str) -> Iterator[str]:
    if not isinstance(node.this, exp.Identifier):
        raise UnsafeSQLError(f"refused: {node.this.sql(dialect=dialect)} in FROM is not a table name", sql)
    for part in ("db", "catalog"):
        if node.args.get(part):
            raise UnsafeSQLError(
                f"refused: table {node.sql(dialect=dialect)} names a schema or database; "
                "use the bare table name of an allowed table",
                sql,
            )
    raw = node.this.this
    if not raw.isascii():
        raise UnsafeSQLError(
            f"refused: table name {raw!r} has non-ASCII characters (a look-alike of an allowed name?); "
            f"allowed tables: {', '.join(sorted(allowed))}",
            sql,
        )
    name = _fold(raw, quoted=bool(node.this.args.get("quoted")), dialect=dialect)
    if name in visible:
        return
    if name not in allowed:
        raise UnsafeSQLError(
            f"refused: table {raw!r} is not one of the allowed tables ({', '.join(sorted(allowed))})", sql
        )
    yield name


def _fold(name: str, *, quoted: bool, dialect: str) -> str:
    """A name as the database resolves it: SQLite ignores case always,
    PostgreSQL folds unquoted names to lower case."""
    if dialect == "postgres" and quoted:
        return name
    return name.lower()


def _alias_quoted(cte: exp.CTE) -> bool:
    alias = cte.args.get("alias")
    ident = alias.this if isinstance(alias, exp.TableAlias) else None
    return bool(isinstance(ident, exp.Identifier) and ident.args.get("quoted"))


def _statement_word(node: exp.Expr) -> str:
    for kind, word in _STATEMENT_WORDS.items():
        if isinstance(node, kind):
            return word
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, QUERY_ROOTS):
        return "SELECT"
    return f"{type(node).__name__} ({node.sql()[:60]})"


def _function_name(node: exp.Func) -> str:
    try:
        return node.sql_name()
    except (NotImplementedError, AttributeError):  # pragma: no cover - every Func has one
        return type(node).__name__


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
