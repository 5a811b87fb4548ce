"""Rows: the result of ``app.sql`` (a list of dicts, or Arrow / pandas)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


class Rows(Sequence[dict[str, Any]]):
    """Query results: a sequence of dicts, one per row, in column order."""

    def __init__(self, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.columns = columns
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        return dict(zip(self.columns, self._rows[index], strict=True))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        columns = self.columns
        return (dict(zip(columns, row, strict=True)) for row in self._rows)

    def tuples(self) -> list[tuple[Any, ...]]:
        """The rows as tuples."""
        return list(self._rows)

    def scalar(self) -> Any:
        """The first column of the first row (None when there is no row)."""
        return self._rows[0][0] if self._rows else None

    def arrow(self) -> Any:
        """The rows as a ``pyarrow.Table`` (needs pyarrow)."""
        try:
            import pyarrow as pa
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("Rows.arrow() needs pyarrow: pip install 'tidal[data]'") from exc
        return pa.table({c: [row[i] for row in self._rows] for i, c in enumerate(self.columns)})

    def df(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("Rows.df() needs pandas: pip install 'tidal[data]'") from exc
        return pd.DataFrame.from_records(self._rows, columns=self.columns)

    def __repr__(self) -> str:
        return f"<Rows {len(self)} x {self.columns}>"
