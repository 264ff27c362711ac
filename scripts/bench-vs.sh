#!/usr/bin/env bash
# Side by side with wrk: raftkv (this tree) against hraftd, or against another
# raftkv revision (--baseline REV). See scripts/bench_vs.py --help.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
exec python "$ROOT/scripts/bench_vs.py" "$@"
