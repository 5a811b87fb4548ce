"""Evaluate and improve: judges, comparisons, experiments (placeholder while it is built)."""
