#!/usr/bin/env bash
# Longer chaos runs against a real 3-node cluster on loopback:
#   scripts/chaos.sh --minutes 5 --nemesis partition [--seed N] [--clients 5] [--nodes 3]
# Writes test-artifacts/chaos/history-<nemesis>-<seed>.{jsonl,verdict.txt,png}
# and keeps the nodes' logs next to them. Exit 0: linearizable, 1: not, 3: undecided.
# Nemeses: kill-leader kill-random pause-leader isolate-leader partition flapping delay membership snapshot
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
exec python tests/integration/nemesis.py --png "$@"
