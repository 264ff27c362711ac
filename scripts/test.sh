#!/usr/bin/env bash
# Run the whole raftkv test suite (bootstraps .venv on first use).
# Extra arguments go to pytest: scripts/test.sh tests/raft -k election
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
# -rs: the run ends with every skipped test and why; --durations: and the
# slowest tests, to keep the whole run (CI: .ci/run) under 30 minutes
exec python -m pytest -q -rs --durations=30 "$@"
