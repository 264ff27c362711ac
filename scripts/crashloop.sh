#!/usr/bin/env bash
# kill -9 random nodes of a local 3-node cluster under write load, restart
# them, and check no acknowledged write was lost.
#   scripts/crashloop.sh --cycles 200 [--seed S] [--dir DIR]
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
exec python tests/integration/crashloop.py "$@"
