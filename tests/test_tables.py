"""MDataFrame and MTable (tidal/tables.py): Motion's table-shaped state types,
unit by unit, through pickling, and as component state on a SQLite store."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import make_app
from pyarrow import fs as pafs

import tidal
from tidal import MDataFrame, MTable
from tidal.tables import METRICS

# --------------------------------------------------------------------------- brute force


def brute_scores(vectors: np.ndarray[Any, Any], query: np.ndarray[Any, Any], metric: str) -> list[float]:
    """Each row's score, one row at a time in plain Python/numpy."""
    out = []
    for v in vectors:
        if metric == "euclidean":
            out.append(float(np.sqrt(sum((a - b) ** 2 for a, b in zip(v, query, strict=True)))))
        elif metric == "manhattan":
            out.append(float(sum(abs(a - b) for a, b in zip(v, query, strict=True))))
        elif metric == "dot_product":
            out.append(float(sum(a * b for a, b in zip(v, query, strict=True))))
        else:
            dot = sum(a * b for a, b in zip(v, query, strict=True))
            out.append(float(dot / (np.sqrt(sum(a * a for a in v)) * np.sqrt(sum(b * b for b in query)))))
    return out


def brute_knn(vectors: np.ndarray[Any, Any], query: np.ndarray[Any, Any], k: int, metric: str) -> list[int]:
    """Row positions of the k nearest, nearest first, by sorting every score."""
    scores = brute_scores(vectors, query, metric)
    sign = -1.0 if metric in ("cosine_similarity", "dot_product") else 1.0
    return sorted(range(len(scores)), key=lambda i: (sign * scores[i], i))[:k]


def vector_frame(n: int = 40, dim: int = 6, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim))
    df = pd.DataFrame({"id": np.arange(n), "name": [f"row{i}" for i in range(n)], "vec": list(vectors)})
    return df, vectors


# --------------------------------------------------------------------------- MDataFrame


def test_mdataframe_is_a_dataframe() -> None:
    df = MDataFrame({"value": [0, 1, 2]})
    assert isinstance(df, pd.DataFrame)
    assert list(df["value"]) == [0, 1, 2]
    assert df["value"].sum() == 3


def test_mdataframe_pickles_through_arrow_ipc() -> None:
    df = MDataFrame(
        {
            "i": [1, 2, 3],
            "f": [0.5, np.nan, 2.5],
            "s": ["a", "b", None],
            "b": [True, False, True],
            "t": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]).tz_localize("UTC"),
            "c": pd.Categorical(["x", "y", "x"]),
        },
        index=pd.Index([10, 20, 30], name="key"),
    )
    state = df.__getstate__()
    assert isinstance(state, bytes)
    # It really is an Arrow IPC stream of the frame.
    table = pa.ipc.open_stream(pa.py_buffer(state)).read_all()
    assert table.num_rows == 3
    assert {"i", "f", "s", "b", "t", "c"} <= set(table.column_names)
    back = pickle.loads(pickle.dumps(df, protocol=5))
    assert type(back) is MDataFrame
    pd.testing.assert_frame_equal(back, df)
    assert list(back.dtypes) == list(df.dtypes)


def test_mdataframe_default_and_empty_round_trip() -> None:
    for df in (MDataFrame({"value": [0, 1, 2]}), MDataFrame({"a": pd.Series([], dtype="int64")}), MDataFrame()):
        back = pickle.loads(pickle.dumps(df))
        pd.testing.assert_frame_equal(back, df)
        assert type(back) is MDataFrame


def test_mdataframe_derived_frames_stay_mdataframes() -> None:
    df = MDataFrame({"a": [1, 2, 3, 4], "b": [1.0, 2.0, 3.0, 4.0]})
    derived = [
        df[df["a"] > 2],
        df.head(2),
        df.iloc[1:3],
        df.loc[:, ["a"]],
        df * 2,
        df.assign(c=lambda d: d["a"] + 1),
        df.copy(),
        pd.concat([df, df]),
        df.groupby("a").sum(),
        df.reset_index(),
    ]
    for frame in derived:
        assert type(frame) is MDataFrame, frame
        pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(frame)), frame)
    # A column is a plain Series.
    assert type(df["a"]) is pd.Series
    assert df[df["a"] > 2]["a"].tolist() == [3, 4]


def test_mdataframe_that_arrow_cannot_hold_says_so() -> None:
    for df in (MDataFrame({"mixed": [1, "two", 3.0]}), MDataFrame([[1, 2]], columns=["a", "a"])):
        with pytest.raises(TypeError, match="MDataFrame cannot be converted to Arrow"):
            pickle.dumps(df)


def test_mdataframe_reads_pandas_own_pickle_state() -> None:
    """State pickled by pandas (a DataFrame stored before the app switched
    to MDataFrame, say) still loads."""
    state = pd.DataFrame({"a": [1, 2]}).__getstate__()
    df = MDataFrame.__new__(MDataFrame)
    df.__setstate__(state)
    pd.testing.assert_frame_equal(df, MDataFrame({"a": [1, 2]}))


# --------------------------------------------------------------------------- MTable: building


def test_mtable_cannot_be_constructed_directly() -> None:
    with pytest.raises(NotImplementedError, match="from_pandas"):
        MTable(pa.table({"a": [1]}))
    with pytest.raises(NotImplementedError):
        MTable()


def test_from_pandas_from_arrow_from_schema() -> None:
    t = MTable.from_pandas(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=[5, 6]))
    assert t.data.column_names == ["a", "b"]  # the index is not a column
    assert t.data.column("a").to_pylist() == [1, 2]
    assert t.filesystem is None and t.identifier is None

    table = pa.table({"x": pa.array([1.0, 2.0])})
    assert MTable.from_arrow(table).data.equals(table)

    schema = pa.schema([("id", pa.int64()), ("vec", pa.list_(pa.float32(), 3))])
    empty = MTable.from_schema(schema)
    assert empty.data.num_rows == 0
    assert empty.data.schema.equals(schema)

    fs = pafs.LocalFileSystem()
    with_fs = MTable.from_pandas(pd.DataFrame({"a": [1]}), fs, identifier="/tmp/x.parquet")
    assert with_fs.filesystem is fs and with_fs.identifier == "/tmp/x.parquet"

    with pytest.raises(TypeError):
        MTable.from_pandas({"a": [1]})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MTable.from_arrow(pd.DataFrame({"a": [1]}))
    with pytest.raises(TypeError):
        MTable.from_schema(table)


def test_data_filesystem_identifier_setters() -> None:
    t = MTable.from_arrow(pa.table({"a": [1]}))
    t.data = pa.table({"b": ["z"]})
    assert t.data.column_names == ["b"]
    with pytest.raises(TypeError):
        t.data = [1, 2]
    fs = pafs.LocalFileSystem()
    t.filesystem = fs
    t.identifier = "somewhere.parquet"
    assert t.filesystem is fs and t.identifier == "somewhere.parquet"
    with pytest.raises(TypeError):
        t.filesystem = "local"  # type: ignore[assignment]
    with pytest.raises(TypeError):
        t.identifier = 3  # type: ignore[assignment]
    assert "1 rows" in repr(t) and "b: string" in repr(t)


# --------------------------------------------------------------------------- MTable: rows


def test_add_row_appends() -> None:
    t = MTable.from_pandas(pd.DataFrame({"id": [1], "name": ["a"], "vec": [np.array([1.0, 2.0])]}))
    t.add_row({"id": 2, "name": "b", "vec": np.array([3.0, 4.0])})
    t.add_row({"name": "c", "vec": [5.0, 6.0], "id": 3})  # key order does not matter
    assert t.data.num_rows == 3
    assert t.data.column("id").to_pylist() == [1, 2, 3]
    assert t.data.column("name").to_pylist() == ["a", "b", "c"]
    assert t.data.column("vec").to_pylist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    # Still converts back to pandas, with a fresh index.
    assert t.data.to_pandas()["id"].tolist() == [1, 2, 3]


def test_add_row_to_an_empty_table_and_nulls() -> None:
    t = MTable.from_schema(pa.schema([pa.field("id", pa.int64(), nullable=False), ("note", pa.string())]))
    t.add_row({"id": 7, "note": None})
    assert t.data.to_pylist() == [{"id": 7, "note": None}]
    with pytest.raises(TypeError, match="'id' is not nullable"):
        t.add_row({"id": None, "note": "x"})


def test_add_row_missing_or_unknown_column_is_a_key_error() -> None:
    t = MTable.from_arrow(pa.table({"id": [1], "name": ["a"]}))
    with pytest.raises(KeyError, match="'name'"):
        t.add_row({"id": 2})
    with pytest.raises(KeyError, match="extra"):
        t.add_row({"id": 2, "name": "b", "extra": 1})
    assert t.data.num_rows == 1


@pytest.mark.parametrize(
    "row",
    [
        {"id": "two", "name": "b"},
        {"id": 2, "name": 5},
        {"id": 2.5, "name": "b"},
        {"id": True, "name": "b"},
    ],
)
def test_add_row_type_mismatch_is_a_type_error(row: dict[str, Any]) -> None:
    t = MTable.from_arrow(pa.table({"id": pa.array([1], pa.int64()), "name": ["a"]}))
    with pytest.raises(TypeError, match=r"column '(id|name)'"):
        t.add_row(row)
    assert t.data.num_rows == 1


def test_add_row_vector_of_the_wrong_size_is_a_type_error() -> None:
    t = MTable.from_schema(pa.schema([("vec", pa.list_(pa.float32(), 2))]))
    with pytest.raises(TypeError, match="'vec'"):
        t.add_row({"vec": [1.0, 2.0, 3.0]})


def test_remove_row_returns_a_new_table_and_leaves_the_mtable() -> None:
    t = MTable.from_arrow(pa.table({"a": [0, 1, 2, 3]}))
    assert t.remove_row(1).column("a").to_pylist() == [0, 2, 3]
    assert t.remove_row(0).column("a").to_pylist() == [1, 2, 3]
    assert t.remove_row(3).column("a").to_pylist() == [0, 1, 2]
    assert t.remove_row(-1).column("a").to_pylist() == [0, 1, 2]
    assert t.data.column("a").to_pylist() == [0, 1, 2, 3]  # unchanged
    for i in (4, -5, 100):
        with pytest.raises(IndexError):
            t.remove_row(i)
    with pytest.raises(IndexError):
        MTable.from_schema(pa.schema([("a", pa.int64())])).remove_row(0)


# --------------------------------------------------------------------------- MTable: columns


def test_add_and_append_column() -> None:
    t = MTable.from_arrow(pa.table({"a": [1, 2], "c": [5, 6]}))
    t.add_column(1, "b", [3, 4])
    assert t.data.column_names == ["a", "b", "c"]
    assert t.data.column("b").to_pylist() == [3, 4]
    t.append_column(pa.field("d", pa.float32()), np.array([0.5, 1.5]))
    assert t.data.column_names == ["a", "b", "c", "d"]
    assert t.data.schema.field("d").type == pa.float32()
    t.append_column("e", pa.array(["x", "y"]))
    t.add_column(0, "z", pd.Series([True, False]))
    assert t.data.column_names == ["z", "a", "b", "c", "d", "e"]

    with pytest.raises(ValueError, match="already has a column 'a'"):
        t.append_column("a", [1, 2])
    with pytest.raises(ValueError, match="already has a column 'b'"):
        t.add_column(0, pa.field("b", pa.int64()), [1, 2])
    with pytest.raises(ValueError):  # wrong length (pyarrow's ArrowInvalid is a ValueError)
        t.append_column("f", [1, 2, 3])
    with pytest.raises(TypeError):
        t.append_column("g", 5)


def test_remove_column_and_by_name() -> None:
    t = MTable.from_arrow(pa.table({"a": [1], "b": [2], "c": [3]}))
    t.remove_column(1)
    assert t.data.column_names == ["a", "c"]
    t.remove_column(-1)
    assert t.data.column_names == ["a"]
    with pytest.raises(IndexError):
        t.remove_column(1)
    t.append_column("b", [9])
    t.remove_column_by_name("a")
    assert t.data.column_names == ["b"]
    with pytest.raises(KeyError, match="'nope'"):
        t.remove_column_by_name("nope")


# --------------------------------------------------------------------------- MTable: knn


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 5, 40, 100])
def test_knn_matches_brute_force(metric: str, k: int) -> None:
    df, vectors = vector_frame()
    query = np.random.default_rng(1).normal(size=vectors.shape[1])
    result = MTable.from_pandas(df).knn("vec", query, k, metric)
    expected = brute_knn(vectors, query, k, metric)
    assert result.num_rows == min(k, len(df))
    assert result.column_names == ["id", "name", "vec", "distances"]
    assert result.schema.field("distances").type == pa.float64()
    assert result.column("id").to_pylist() == expected
    scores = brute_scores(vectors, query, metric)
    np.testing.assert_allclose(result.column("distances").to_numpy(), [scores[i] for i in expected], rtol=1e-12)
    assert result.column("vec").to_pylist() == [list(vectors[i]) for i in expected]


def test_knn_similarity_nearest_is_highest() -> None:
    t = MTable.from_pandas(pd.DataFrame({"id": [0, 1, 2], "vec": [np.array([1.0, 0.0]), [0.0, 1.0], [3.0, 0.1]]}))
    assert t.knn("vec", [1.0, 0.0], 1, "dot_product").column("id").to_pylist() == [2]
    assert t.knn("vec", [1.0, 0.0], 1, "cosine_similarity").column("id").to_pylist() == [0]
    assert t.knn("vec", [1.0, 0.0], 1, "euclidean").column("id").to_pylist() == [0]
    assert t.knn("vec", [1.0, 0.0], 3, "cosine_similarity").column("id").to_pylist() == [0, 2, 1]


def test_knn_resulting_columns_and_edge_cases() -> None:
    df, vectors = vector_frame(n=10)
    t = MTable.from_pandas(df)
    query = vectors[3]
    result = t.knn("vec", query, 2, "euclidean", resulting_columns=["name"])
    assert result.column_names == ["name", "distances"]
    assert result.column("name").to_pylist()[0] == "row3"
    assert result.column("distances").to_pylist()[0] == pytest.approx(0.0)

    assert t.knn("vec", query, 0, "euclidean").num_rows == 0
    with pytest.raises(ValueError, match="k must be"):
        t.knn("vec", query, -1, "euclidean")
    with pytest.raises(KeyError, match="missing"):
        t.knn("vec", query, 2, "euclidean", resulting_columns=["missing"])
    with pytest.raises(KeyError, match="'nope'"):
        t.knn("nope", query, 2, "euclidean")
    with pytest.raises(ValueError, match="not a vector column"):
        t.knn("name", query, 2, "euclidean")
    with pytest.raises(ValueError, match="dimensions"):
        t.knn("vec", query[:2], 2, "euclidean")
    with pytest.raises(ValueError, match=r"unknown metric 'cosine'.*euclidean, manhattan, cosine_similarity"):
        t.knn("vec", query, 2, "cosine")

    empty = MTable.from_schema(pa.schema([("id", pa.int64()), ("vec", pa.list_(pa.float64()))]))
    out = empty.knn("vec", [1.0, 2.0], 3, "euclidean")
    assert out.num_rows == 0 and out.column_names == ["id", "vec", "distances"]


def test_knn_on_fixed_size_lists_chunked_and_after_edits() -> None:
    """Fixed-size float32 vectors, a table of several chunks, rows added and
    removed: the vector math still lines up with the rows."""
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(30, 4)).astype(np.float32)
    kind = pa.list_(pa.float32(), 4)
    schema = pa.schema([("id", pa.int64()), ("vec", kind)])
    parts = [
        pa.table({"id": pa.array(range(a, b)), "vec": pa.array(list(vectors[a:b]), kind)}, schema=schema)
        for a, b in ((0, 10), (10, 25))
    ]
    t = MTable.from_arrow(pa.concat_tables(parts))
    for i in range(25, 30):
        t.add_row({"id": i, "vec": vectors[i]})
    t.data = t.remove_row(0)  # a sliced first chunk
    ids = t.data.column("id").to_pylist()
    assert ids == list(range(1, 30))
    query = rng.normal(size=4)
    for metric in METRICS:
        got = t.knn("vec", query, 7, metric).column("id").to_pylist()
        expected = [ids[i] for i in brute_knn(vectors[1:].astype(np.float64), query, 7, metric)]
        assert got == expected, metric


def test_knn_zero_vector_under_cosine_comes_last() -> None:
    t = MTable.from_arrow(pa.table({"id": [0, 1, 2], "vec": [[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]}))
    result = t.knn("vec", [1.0, 0.0], 3, "cosine_similarity")
    assert result.column("id").to_pylist() == [1, 2, 0]
    assert np.isnan(result.column("distances").to_pylist()[2])


def test_vectors_of_different_lengths_or_nulls_are_rejected() -> None:
    t = MTable.from_arrow(pa.table({"vec": [[1.0, 2.0], [1.0]]}))
    with pytest.raises(ValueError, match="different lengths"):
        t.knn("vec", [1.0, 2.0], 1, "euclidean")
    t = MTable.from_arrow(pa.table({"vec": [[1.0, 2.0], None]}))
    with pytest.raises(ValueError, match="null"):
        t.apply_distance("vec", [1.0, 2.0], "euclidean")


@pytest.mark.parametrize("metric", METRICS)
def test_apply_distance(metric: str) -> None:
    df, vectors = vector_frame(n=12)
    query = np.random.default_rng(3).normal(size=vectors.shape[1])
    t = MTable.from_pandas(df)
    result = t.apply_distance("vec", query, metric)
    assert result.column_names == ["id", "name", "vec", "distances"]
    assert result.column("id").to_pylist() == list(range(12))  # the table's order
    np.testing.assert_allclose(result.column("distances").to_numpy(), brute_scores(vectors, query, metric))
    assert t.data.column_names == ["id", "name", "vec"]  # the MTable is unchanged
    # A table that has a distances column already gets it replaced in the result.
    again = MTable.from_arrow(result).apply_distance("vec", query, metric)
    assert again.column_names == ["id", "name", "vec", "distances"]
    with pytest.raises(ValueError, match="unknown metric"):
        t.apply_distance("vec", query, "hamming")


# --------------------------------------------------------------------------- MTable: pickling


def test_pickle_without_filesystem_carries_the_data() -> None:
    df, _ = vector_frame(n=5)
    t = MTable.from_pandas(df)
    state = t.__getstate__()
    assert isinstance(state["data"], bytes)
    back = pickle.loads(pickle.dumps(t, protocol=5))
    assert type(back) is MTable
    assert back.data.equals(t.data)
    assert back.data.schema.equals(t.data.schema)
    assert back.filesystem is None and back.identifier is None


def test_pickle_with_filesystem_and_identifier_writes_parquet(tmp_path: Path) -> None:
    df, vectors = vector_frame(n=8)
    path = tmp_path / "tables" / "embeddings.parquet"
    t = MTable.from_pandas(df, pafs.LocalFileSystem(), identifier=str(path))
    blob = pickle.dumps(t)
    assert path.is_file()
    assert len(blob) < 1000  # only the path and the filesystem
    assert str(path).encode() in blob
    back = pickle.loads(blob)
    assert back.data.equals(t.data)
    assert back.identifier == str(path)
    assert isinstance(back.filesystem, pafs.LocalFileSystem)
    assert back.knn("vec", vectors[2], 1, "euclidean").column("id").to_pylist() == [2]
    # The file at the identifier is overwritten by the next pickle.
    t.add_row({"id": 99, "name": "new", "vec": vectors[0]})
    pickle.dumps(t)
    assert pickle.loads(blob).data.num_rows == 9
    assert sorted(p.name for p in path.parent.iterdir()) == ["embeddings.parquet"]  # no temporaries left


def test_pickle_with_filesystem_without_identifier_uses_the_tidal_home() -> None:
    t = MTable.from_arrow(pa.table({"a": [1, 2]}), pafs.LocalFileSystem())
    first = pickle.dumps(t)
    folder = tidal.config.home_dir().resolve() / "tables"
    files = list(folder.glob("*.parquet"))
    assert len(files) == 1
    assert str(files[0]).encode() in first
    assert pickle.dumps(t) == first  # unchanged: the same file
    t.add_row({"a": 3})
    second = pickle.dumps(t)
    assert len(list(folder.glob("*.parquet"))) == 2  # the older version keeps its file
    assert pickle.loads(first).data.column("a").to_pylist() == [1, 2]
    assert pickle.loads(second).data.column("a").to_pylist() == [1, 2, 3]
    assert pickle.loads(second).identifier is None


# --------------------------------------------------------------------------- packaging


def test_import_tidal_loads_neither_pandas_nor_pyarrow() -> None:
    code = (
        "import sys, tidal\n"
        "assert 'MDataFrame' in tidal.__all__ and 'MTable' in tidal.__all__\n"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'tidal.tables') if m in sys.modules))\n"
        "tidal.MTable\n"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'tidal.tables') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "['pandas', 'pyarrow', 'tidal.tables']"]
    assert tidal.MDataFrame is MDataFrame and tidal.MTable is MTable


def test_without_pandas_the_error_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pandas', 'pyarrow'):\n"
        "            raise ImportError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tidal\n"
        "try:\n"
        "    tidal.MDataFrame\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "pip install 'tidal[data]'" in result.stdout


# --------------------------------------------------------------------------- as component state


def frames_component(app: tidal.App) -> tidal.Component:
    C = app.component("Frames")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"df": MDataFrame({"value": [0, 1, 2]})}

    @C.serve("total")
    def total(state: Any, props: Any) -> int:
        return int(state["df"]["value"].sum())

    @C.update("append")
    def append(state: Any, props: Any) -> dict[str, Any]:
        df = state["df"]
        return {"df": pd.concat([df, MDataFrame({"value": [props["value"]]})], ignore_index=True)}

    return C


def test_mdataframe_as_component_state_on_sqlite(tmp_path: Path) -> None:
    app = make_app("sqlite", tmp_path)
    C = frames_component(app)
    with C("f1") as c:
        df = c.read_state("df")
        assert type(df) is MDataFrame
        assert df["value"].tolist() == [0, 1, 2]
        c.write_state({"df": MDataFrame({"value": [10, 20], "label": ["a", "b"]})})
        assert c.run("total", props={}) == 30
        c.run("append", props={"value": 5}, flush_update=True)
        assert c.read_state("df")["value"].tolist() == [10, 20, 5]
    app.close()

    # A second app on the same file: the frame comes back from the pickle.
    other = make_app("sqlite", tmp_path)
    C2 = frames_component(other)
    with C2("f1") as c:
        df = c.read_state("df")
        assert type(df) is MDataFrame
        pd.testing.assert_frame_equal(
            df, MDataFrame({"value": [10, 20, 5], "label": ["a", "b", None]}).astype({"label": df["label"].dtype})
        )
        assert c.run("total", props={}) == 35
    other.close()


def tables_component(app: tidal.App, df: pd.DataFrame) -> tidal.Component:
    C = app.component("Tables")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"table": MTable.from_pandas(df)}

    @C.update("add")
    def add(state: Any, props: Any) -> dict[str, Any]:
        table = state["table"]
        table.add_row({"id": props["id"], "name": props["name"], "vec": np.asarray(props["vec"])})
        return {"table": table}

    @C.serve("search")
    def search(state: Any, props: Any) -> list[dict[str, Any]]:
        result = state["table"].knn("vec", np.asarray(props["query"]), props["k"], props["metric"], ["id", "name"])
        return list(result.to_pylist())

    return C


@pytest.mark.parametrize("with_filesystem", [False, True])
def test_mtable_as_component_state_on_sqlite(tmp_path: Path, with_filesystem: bool) -> None:
    df, vectors = vector_frame(n=25, dim=5, seed=11)
    app = make_app("sqlite", tmp_path)
    C = tables_component(app, df)
    query = np.random.default_rng(12).normal(size=5)
    extra = np.random.default_rng(13).normal(size=(2, 5))
    with C("t1") as c:
        table = c.read_state("table")
        assert type(table) is MTable
        assert table.data.num_rows == 25
        if with_filesystem:
            table.filesystem = pafs.LocalFileSystem()
            table.identifier = str(tmp_path / "parquet" / "t1.parquet")
        table.data = table.remove_row(0)  # write back a modified table
        c.write_state({"table": table})
        assert c.read_state("table").data.num_rows == 24
        c.run("add", props={"id": 100, "name": "new0", "vec": extra[0].tolist()}, flush_update=True)
        c.run("add", props={"id": 101, "name": "new1", "vec": extra[1].tolist()}, flush_update=True)
        assert c.read_state("table").data.num_rows == 26
    app.close()
    if with_filesystem:
        assert (tmp_path / "parquet" / "t1.parquet").is_file()

    all_ids = [*range(1, 25), 100, 101]
    all_vectors = np.vstack([vectors[1:], extra])
    other = make_app("sqlite", tmp_path)
    C2 = tables_component(other, df)
    with C2("t1") as c:
        table = c.read_state("table")
        assert table.data.column("id").to_pylist() == all_ids
        assert (table.filesystem is not None) == with_filesystem
        for metric in METRICS:
            got = c.run("search", props={"query": query.tolist(), "k": 4, "metric": metric})
            expected = brute_knn(all_vectors, query, 4, metric)
            assert [row["id"] for row in got] == [all_ids[i] for i in expected], metric
            scores = brute_scores(all_vectors, query, metric)
            np.testing.assert_allclose([row["distances"] for row in got], [scores[i] for i in expected])
            assert set(got[0]) == {"id", "name", "distances"}
        # The new rows are findable by their own vectors.
        hit = c.run("search", props={"query": extra[1].tolist(), "k": 1, "metric": "euclidean"})
        assert hit[0]["name"] == "new1" and hit[0]["distances"] == pytest.approx(0.0)
    other.close()
