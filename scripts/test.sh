#!/usr/bin/env bash
# Run the whole raftkv test suite (bootstraps .venv on first use).
# Extra arguments go to pytest: scripts/test.sh tests/raft -k election
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
# -rs: the run ends with every skipped test and why
exec python -m pytest -q -rs "$@"
