"""Table-shaped state: ``MDataFrame`` and ``MTable`` (Motion's names).

Both keep Motion's public behaviour, so an app that imports them from
``motion`` runs with ``from tidal import MDataFrame, MTable``:

- ``MDataFrame`` is a ``pandas.DataFrame`` that pickles through Arrow IPC
  instead of pandas' own pickle format.
- ``MTable`` wraps a ``pyarrow.Table`` with row and column edits and
  k-nearest-neighbour search over a vector column; it pickles as an Arrow IPC
  stream, or, with a ``filesystem`` set, as a Parquet file whose path is all
  the pickle holds.

They need pandas and pyarrow (``pip install 'tidal[data]'``). ``import tidal``
does not load this module: ``tidal.MDataFrame`` and ``tidal.MTable`` import it
on first use.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

try:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from pyarrow import fs as pafs
    from pyarrow import parquet as pq
except ImportError as exc:  # pragma: no cover - the dev environment has them
    raise ImportError(
        f"tidal.MDataFrame and tidal.MTable need pandas and pyarrow ({exc}); install them with "
        "pip install 'tidal[data]'"
    ) from exc

from .config import home_dir

__all__ = ["METRICS", "MDataFrame", "MTable"]

DISTANCES = "distances"
"""Name of the column that ``MTable.knn`` and ``MTable.apply_distance`` add."""

METRICS = ("euclidean", "manhattan", "cosine_similarity", "dot_product")
"""The metrics ``knn`` and ``apply_distance`` know. For the first two a
smaller value is nearer; for the similarities a larger one is."""

_SIMILARITIES = frozenset({"cosine_similarity", "dot_product"})
_TABLES_FOLDER = "tables"


def _ipc_bytes(table: Any) -> bytes:
    """``table`` as the bytes of one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _read_ipc(data: bytes) -> Any:
    """The ``pa.Table`` in an Arrow IPC stream."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


# --------------------------------------------------------------------------- MDataFrame


class MDataFrame(pd.DataFrame):  # type: ignore[misc]
    """A ``pandas.DataFrame`` for component state that pickles through Arrow.

    Use it as any DataFrame: ``MDataFrame({"value": [0, 1, 2]})``. Pickling
    (which is how Tidal stores state) writes the frame as an Arrow IPC stream
    rather than with pandas' pickle, so stored state does not depend on
    pandas' internal layout. The index, column names and dtypes that Arrow
    records in its pandas metadata come back on load; every column must be
    convertible to Arrow (a column of mixed Python objects is not), and
    column names unique; ``attrs`` and ``flags`` are not kept.

    Frames derived from an ``MDataFrame`` (slices, ``head()``, arithmetic,
    ``assign``, ``concat`` of MDataFrames, ...) are ``MDataFrame`` too, so
    state written back from them keeps pickling through Arrow. Columns taken
    out (``df["x"]``) are plain ``pandas.Series``. ``MDataFrame`` adds no
    attributes of its own (``_metadata`` is empty).
    """

    _metadata: ClassVar[list[str]] = []

    @property
    def _constructor(self) -> type[MDataFrame]:
        return MDataFrame

    def __getstate__(self) -> bytes:
        """The frame as an Arrow IPC stream (bytes)."""
        try:
            table = pa.Table.from_pandas(pd.DataFrame(self), preserve_index=None)
        except (ValueError, TypeError, pa.ArrowNotImplementedError) as exc:
            raise TypeError(f"MDataFrame cannot be converted to Arrow for pickling: {exc}") from exc
        return _ipc_bytes(table)

    def __setstate__(self, state: Any) -> None:
        """Rebuild the frame from ``__getstate__``'s Arrow IPC stream."""
        if not isinstance(state, bytes | bytearray | memoryview):
            # Anything else is pandas' own state (e.g. a DataFrame pickled
            # before its class became MDataFrame): pandas knows how to read it.
            super().__setstate__(state)
            return
        frame = _read_ipc(bytes(state)).to_pandas()
        pd.DataFrame.__init__(self, frame)


# --------------------------------------------------------------------------- MTable


class MTable:
    """A ``pyarrow.Table`` for component state.

    Build one with ``MTable.from_pandas(df)``, ``MTable.from_arrow(table)``
    or ``MTable.from_schema(schema)``; calling ``MTable(...)`` directly
    raises NotImplementedError. The table is in ``data``.

    Edits: ``add_row``, ``add_column``, ``append_column``, ``remove_column``
    and ``remove_column_by_name`` change the table in place;
    ``remove_row`` returns a new table and leaves this one as it is (as in
    Motion: assign ``t.data = t.remove_row(i)`` to keep the change).

    Search: ``knn`` and ``apply_distance`` over a vector column (a list or
    fixed-size-list column of numbers, which is what ``from_pandas`` makes of
    a column of numpy arrays).

    Pickling: without a ``filesystem`` the table goes into the pickle as an
    Arrow IPC stream. With one (any ``pyarrow.fs.FileSystem``), it is written
    as a Parquet file on it, and the pickle holds only the path and the
    filesystem: at ``identifier`` if set (overwritten each time), else at a
    name derived from the table's contents in ``<tidal home>/tables/`` (so
    each stored version of the state keeps its own file). Unpickling reads
    the file back.
    """

    __slots__ = ("_data", "_filesystem", "_identifier")

    def __init__(
        self,
        data: pa.Table | None = None,
        filesystem: pafs.FileSystem | None = None,
        identifier: str | None = None,
        external: bool = True,
    ) -> None:
        """Internal: use ``from_pandas``, ``from_arrow`` or ``from_schema``."""
        if external:
            raise NotImplementedError(
                "MTable cannot be constructed directly: use MTable.from_pandas(df), "
                "MTable.from_arrow(table) or MTable.from_schema(schema)"
            )
        self._data = _check_table(data)
        self._filesystem = filesystem
        self._identifier = identifier

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_pandas(
        cls, df: pd.DataFrame, filesystem: pafs.FileSystem | None = None, *, identifier: str | None = None
    ) -> MTable:
        """An MTable of ``df``'s columns. The index is not kept: call
        ``df.reset_index()`` first to keep it as a column. Columns of numpy
        arrays (or lists) of numbers become list columns, usable by ``knn``."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"MTable.from_pandas expects a pandas DataFrame, not {type(df).__name__}")
        table = pa.Table.from_pandas(pd.DataFrame(df), preserve_index=False)
        return cls(table, filesystem, identifier, external=False)

    @classmethod
    def from_arrow(
        cls, table: pa.Table, filesystem: pafs.FileSystem | None = None, *, identifier: str | None = None
    ) -> MTable:
        """An MTable holding ``table`` (a ``pyarrow.Table``)."""
        return cls(table, filesystem, identifier, external=False)

    @classmethod
    def from_schema(
        cls, schema: pa.Schema, filesystem: pafs.FileSystem | None = None, *, identifier: str | None = None
    ) -> MTable:
        """An empty MTable with ``schema`` (a ``pyarrow.Schema``)."""
        if not isinstance(schema, pa.Schema):
            raise TypeError(f"MTable.from_schema expects a pyarrow Schema, not {type(schema).__name__}")
        return cls(schema.empty_table(), filesystem, identifier, external=False)

    # -- properties ----------------------------------------------------------------------

    @property
    def data(self) -> pa.Table:
        """The ``pyarrow.Table``; assign a new one to replace it."""
        return self._data

    @data.setter
    def data(self, value: pa.Table) -> None:
        self._data = _check_table(value)

    @property
    def filesystem(self) -> pafs.FileSystem | None:
        """Where pickling writes the table as Parquet; None keeps it in the pickle."""
        return self._filesystem

    @filesystem.setter
    def filesystem(self, value: pafs.FileSystem | None) -> None:
        if value is not None and not isinstance(value, pafs.FileSystem):
            raise TypeError(f"filesystem must be a pyarrow.fs.FileSystem or None, not {type(value).__name__}")
        self._filesystem = value

    @property
    def identifier(self) -> str | None:
        """The path on ``filesystem`` that pickling writes to; None for a
        name derived from the contents under the Tidal home."""
        return self._identifier

    @identifier.setter
    def identifier(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError(f"identifier must be a string or None, not {type(value).__name__}")
        self._identifier = value

    def __repr__(self) -> str:
        columns = ", ".join(f"{f.name}: {f.type}" for f in self._data.schema)
        return f"MTable({self._data.num_rows} rows; {columns})"

    # -- rows --------------------------------------------------------------------------

    def add_row(self, row: Mapping[str, Any]) -> None:
        """Append one row given as ``{column: value}``.

        Every column needs a value (None for a null in a nullable column):
        a missing one raises KeyError naming it, as does a key that is no
        column. A value the column's type cannot hold raises TypeError."""
        schema = self._data.schema
        for field in schema:
            if field.name not in row:
                raise KeyError(f"row has no value for column {field.name!r}")
        unknown = [key for key in row if schema.get_field_index(key) < 0]
        if unknown:
            raise KeyError(f"row has values for columns the table does not have: {unknown}")
        arrays = [_cell(field, row[field.name]) for field in schema]
        new_row = pa.Table.from_arrays(arrays, schema=schema)
        self._data = pa.concat_tables([self._data, new_row])

    def remove_row(self, i: int) -> pa.Table:
        """The table without row ``i`` (negative counts from the end).

        The MTable itself is not changed (Motion's behaviour): assign the
        result to ``data`` to keep it. IndexError when ``i`` is out of range."""
        n = self._data.num_rows
        if not -n <= i < n:
            raise IndexError(f"row {i} is out of range for a table of {n} rows")
        i %= n
        return pa.concat_tables([self._data.slice(0, i), self._data.slice(i + 1)])

    # -- columns -----------------------------------------------------------------------

    def add_column(self, i: int, field: str | pa.Field, column: Any) -> None:
        """Insert ``column`` (an Arrow array, chunked array or sequence of
        values) at position ``i``, named by ``field`` (a name or a
        ``pyarrow.Field``). ValueError if the name is taken or the length
        differs from the table's."""
        self._check_new_column(field)
        self._data = self._data.add_column(i, field, _column(field, column))

    def append_column(self, field: str | pa.Field, column: Any) -> None:
        """Add ``column`` after the last one (see ``add_column``); ValueError
        if a column of that name exists."""
        self._check_new_column(field)
        self._data = self._data.append_column(field, _column(field, column))

    def remove_column(self, i: int) -> None:
        """Drop the column at position ``i``; IndexError when out of range."""
        n = self._data.num_columns
        if not -n <= i < n:
            raise IndexError(f"column {i} is out of range for a table of {n} columns")
        self._data = self._data.remove_column(i % n)

    def remove_column_by_name(self, name: str) -> None:
        """Drop the column called ``name``; KeyError if there is none."""
        index = self._data.schema.get_field_index(name)
        if index < 0:
            raise KeyError(f"the table has no column {name!r}; its columns: {self._data.column_names}")
        self._data = self._data.remove_column(index)

    def _check_new_column(self, field: str | pa.Field) -> None:
        name = field.name if isinstance(field, pa.Field) else field
        if not isinstance(name, str):
            raise TypeError(f"a column is named by a string or a pyarrow.Field, not {type(field).__name__}")
        if self._data.schema.get_field_index(name) != -1:
            raise ValueError(f"the table already has a column {name!r}")

    # -- vector search -----------------------------------------------------------------

    def apply_distance(self, vector_column_name: str, query_point: Any, metric: str) -> pa.Table:
        """The table, in its order, with a ``distances`` float64 column: each
        row's ``metric`` (one of ``METRICS``) between its vector in
        ``vector_column_name`` and ``query_point``. For the similarity
        metrics the column holds the similarity. A ``distances`` column the
        table already has is replaced in the result."""
        scores = self._scores(vector_column_name, query_point, metric)
        return _with_distances(self._data, scores)

    def knn(
        self,
        vector_column_name: str,
        query_point: Any,
        k: int,
        metric: str,
        resulting_columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """The ``k`` rows nearest to ``query_point`` (fewer if the table is
        smaller), nearest first, with a ``distances`` float64 column appended.

        ``metric`` is one of ``METRICS``: for ``euclidean`` and ``manhattan``
        nearest is the smallest distance; for ``cosine_similarity`` and
        ``dot_product`` it is the largest similarity, which is what
        ``distances`` then holds. Rows whose score is undefined (a zero
        vector under cosine similarity, NaN components) come last.
        ``resulting_columns`` picks the columns to return (all by default);
        the ``distances`` column is always added."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise TypeError(f"k must be an int, not {type(k).__name__}")
        if k < 0:
            raise ValueError(f"k must be 0 or more, not {k}")
        scores = self._scores(vector_column_name, query_point, metric)
        # argpartition/argsort take the smallest: negate similarities. NaN
        # (an undefined score) sorts after every number either way.
        keys = -scores if metric in _SIMILARITIES else scores
        n = len(keys)
        k = min(int(k), n)
        candidates = np.arange(n)
        if 0 < k < n:
            candidates = np.argpartition(keys, k - 1)[:k]
        elif k == 0:
            candidates = candidates[:0]
        # Sort the k by score, ties by row position, so results are stable.
        order = candidates[np.lexsort((candidates, keys[candidates]))]
        table = self._data
        if resulting_columns is not None:
            missing = [c for c in resulting_columns if table.schema.get_field_index(c) < 0]
            if missing:
                raise KeyError(f"resulting_columns names columns the table does not have: {missing}")
            table = table.select(list(resulting_columns))
        return _with_distances(table.take(pa.array(order, type=pa.int64())), scores[order])

    def _scores(self, vector_column_name: str, query_point: Any, metric: str) -> np.ndarray[Any, Any]:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(METRICS)}")
        vectors = _vectors(self._data, vector_column_name)
        query = np.asarray(query_point, dtype=np.float64)
        if query.ndim != 1:
            raise ValueError(f"query_point must be one vector (1-D), not an array of shape {query.shape}")
        if vectors.shape[1] != query.shape[0] and vectors.shape[0]:
            raise ValueError(
                f"query_point has {query.shape[0]} dimensions, the vectors in {vector_column_name!r} "
                f"have {vectors.shape[1]}"
            )
        if vectors.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            if metric == "euclidean":
                return np.asarray(np.sqrt(np.sum((vectors - query) ** 2, axis=1)), dtype=np.float64)
            if metric == "manhattan":
                return np.asarray(np.sum(np.abs(vectors - query), axis=1), dtype=np.float64)
            dots = vectors @ query
            if metric == "dot_product":
                return np.asarray(dots, dtype=np.float64)
            norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(query)
            out = np.full(len(dots), np.nan)
            np.divide(dots, norms, out=out, where=norms > 0)
            return out

    # -- pickling ----------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Without a filesystem: the table as Arrow IPC bytes. With one: the
        table written as Parquet, and the path and filesystem only."""
        if self._filesystem is None:
            return {"data": _ipc_bytes(self._data), "identifier": self._identifier}
        path = self._identifier or self._generated_path()
        _write_parquet(self._data, self._filesystem, path, replace=self._identifier is not None)
        return {"path": path, "filesystem": self._filesystem, "identifier": self._identifier}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild from ``__getstate__``'s state, reading the Parquet file if
        the table was written to a filesystem."""
        self._identifier = state.get("identifier")
        if "path" in state:
            self._filesystem = state["filesystem"]
            self._data = pq.read_table(state["path"], filesystem=self._filesystem)
        else:
            self._filesystem = None
            self._data = _read_ipc(state["data"])

    def _generated_path(self) -> str:
        """A path under ``<tidal home>/tables/`` named by the table's
        contents: pickling an unchanged table again reuses the file, and a
        changed one never overwrites an older version's."""
        digest = hashlib.sha256(_ipc_bytes(self._data)).hexdigest()[:32]
        folder = home_dir() / _TABLES_FOLDER
        if isinstance(self._filesystem, pafs.LocalFileSystem):
            folder = folder.resolve()
        return (folder / f"{digest}.parquet").as_posix()


# --------------------------------------------------------------------------- helpers


def _check_table(value: Any) -> pa.Table:
    if not isinstance(value, pa.Table):
        raise TypeError(f"an MTable holds a pyarrow.Table, not {type(value).__name__}")
    return value


def _cell(field: pa.Field, value: Any) -> pa.Array:
    """``value`` as a one-element array of ``field``'s type, or TypeError."""
    if value is None and not field.nullable:
        raise TypeError(f"column {field.name!r} is not nullable, got None")
    if pa.types.is_integer(field.type) and isinstance(value, float | np.floating):
        raise TypeError(f"column {field.name!r} holds {field.type}, got the float {value!r}")
    try:
        return pa.array([value], type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise TypeError(f"column {field.name!r} holds {field.type}, cannot take {value!r}: {exc}") from exc


def _column(field: str | pa.Field, column: Any) -> Any:
    """``column`` as Arrow data, of ``field``'s type when a Field is given."""
    if isinstance(column, pa.Array | pa.ChunkedArray):
        return column
    kind = field.type if isinstance(field, pa.Field) else None
    if isinstance(column, pd.Series | np.ndarray):
        return pa.array(column, type=kind)
    if isinstance(column, Iterable) and not isinstance(column, str | bytes):
        return pa.array(list(column), type=kind)
    raise TypeError(f"a column is an Arrow array or a sequence of values, not {type(column).__name__}")


def _vectors(table: pa.Table, name: str) -> np.ndarray[Any, Any]:
    """Column ``name`` as a 2-D float64 array, one row per vector."""
    index = table.schema.get_field_index(name)
    if index < 0:
        raise KeyError(f"the table has no column {name!r}; its columns: {table.column_names}")
    column = table.column(index).combine_chunks()
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise ValueError(f"column {name!r} is not a vector column (a list of numbers): it holds {kind}")
    if not pa.types.is_integer(kind.value_type) and not pa.types.is_floating(kind.value_type):
        raise ValueError(f"column {name!r} holds lists of {kind.value_type}, not of numbers")
    if column.null_count:
        raise ValueError(f"column {name!r} has {column.null_count} null vector(s)")
    n = len(column)
    if n == 0:
        width = kind.list_size if pa.types.is_fixed_size_list(kind) else 0
        return np.empty((0, width), dtype=np.float64)
    if pa.types.is_fixed_size_list(kind):
        width = kind.list_size
    else:
        lengths = np.asarray(column.value_lengths().to_numpy(zero_copy_only=False))
        width = int(lengths[0])
        if not np.all(lengths == width):
            raise ValueError(f"the vectors in column {name!r} have different lengths ({sorted(set(lengths))})")
    # flatten() honours slicing; nulls inside a vector become NaN.
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return np.asarray(flat.reshape(n, width))


def _with_distances(table: pa.Table, scores: np.ndarray[Any, Any]) -> pa.Table:
    values = pa.array(np.asarray(scores, dtype=np.float64), type=pa.float64())
    index = table.schema.get_field_index(DISTANCES)
    if index >= 0:
        return table.set_column(index, DISTANCES, values)
    return table.append_column(DISTANCES, values)


def _write_parquet(table: pa.Table, filesystem: pafs.FileSystem, path: str, *, replace: bool) -> None:
    """Write ``table`` to ``path`` through a temporary file moved into place,
    so a reader never sees half a file. Without ``replace`` an existing file
    (same contents, by its name) is kept."""
    if not replace and filesystem.get_file_info(path).type == pafs.FileType.File:
        return
    parent = Path(path).parent.as_posix()
    if parent not in ("", "."):
        filesystem.create_dir(parent, recursive=True)
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    pq.write_table(table, temporary, filesystem=filesystem)
    try:
        filesystem.move(temporary, path)
    except BaseException:
        filesystem.delete_file(temporary)
        raise
