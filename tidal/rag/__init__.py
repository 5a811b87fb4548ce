"""Retrieval kept fresh: an incremental index over a relation, and
text-to-SQL over the app's relations (placeholder while it is built)."""
