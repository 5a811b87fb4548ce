#!/usr/bin/env bash
# Set up .venv with the dev extras and run the whole check: lint, types, tests.
TIDAL_EXTRAS=dev,embeddings,embeddings-onnx,rag
source "$(dirname "$0")/_env.sh"
# The dashboard tests drive a real headless Chromium (tests/dashboard installs it too when missing).
if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
  apt_install chromium chromium-driver
fi
.venv/bin/ruff check tidal tests benchmarks examples
.venv/bin/ruff format --check tidal tests benchmarks examples
.venv/bin/mypy
# The layers of docs/architecture.md, and no import cycle (pyproject.toml, [tool.importlinter]).
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
