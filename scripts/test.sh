#!/usr/bin/env bash
# Set up .venv with the dev extras and run the whole check: lint, types, tests.
TIDAL_EXTRAS=dev,embeddings
source "$(dirname "$0")/_env.sh"
.venv/bin/ruff check tidal tests benchmarks examples
.venv/bin/ruff format --check tidal tests benchmarks examples
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
