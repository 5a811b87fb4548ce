#!/usr/bin/env bash
# Set up .venv and run the demo app on the embedded store: `tidal demo`.
source "$(dirname "$0")/_env.sh"
exec .venv/bin/tidal demo "$@"
