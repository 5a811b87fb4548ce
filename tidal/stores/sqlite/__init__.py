"""The SQLite store (``sqlite:///path``): ``store`` (:class:`SQLiteStore`,
the verbs), ``schema`` (the tables), ``connections`` (per-thread
connections and transactions) and ``operators`` (the verbs off the hot
path)."""

from .store import SQLiteStore, sqlite_path

__all__ = ["SQLiteStore", "sqlite_path"]
