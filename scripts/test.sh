#!/usr/bin/env bash
# Run the whole raftkv test suite (bootstraps .venv on first use).
# Extra arguments go to pytest: scripts/test.sh tests/raft -k election
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
# The whole suite (no arguments) starts with the checks that keep the code
# as it is meant to be: ruff on the product, mypy on the core and the node
# (both configured in pyproject.toml).
if [ "$#" -eq 0 ]; then
  echo "ruff check raftkv"
  ruff check raftkv
  echo "mypy raftkv/raft raftkv/node"
  mypy raftkv/raft raftkv/node
fi
# The whole suite runs on RAFTKV_TEST_PROCS pytest processes (default 2,
# pytest-xdist): most of its time is spent waiting on nodes, elections and
# timeouts, not on the CPU. A file's tests stay together in one process
# (their module fixtures are shared), and every test already takes its ports
# from the OS and its directories from tmp_path. RAFTKV_TEST_PROCS=1 (or
# arguments) runs them in this process, one at a time.
procs=()
if [ "$#" -eq 0 ] && [ "${RAFTKV_TEST_PROCS:-2}" != 1 ]; then
  procs=(-n "${RAFTKV_TEST_PROCS:-2}" --dist loadfile)
fi
# -rs: the run ends with every skipped test and why; --durations: and the
# slowest tests, to keep the whole run (CI: .ci/run) under 30 minutes
exec python -m pytest -q -rs --durations=30 "${procs[@]}" "$@"
