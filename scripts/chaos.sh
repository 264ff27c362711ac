#!/usr/bin/env bash
# Longer chaos runs against a real 3-node cluster on loopback:
#   scripts/chaos.sh --minutes 5 --nemesis partition [--seed N] [--clients 5] [--nodes 3]
# Writes test-artifacts/chaos/history-<nemesis>-<seed>.{jsonl,verdict.txt,png}
# and keeps the nodes' logs next to them. Exit 0: linearizable, 1: not, 3: undecided.
# Nemeses: kill-leader kill-random pause-leader isolate-leader partition flapping delay membership snapshot
# --network real: the nodes run as separate hosts in network namespaces (needs root)
# and the faults are on the network (routes, link proxies) and the processes:
#   scripts/chaos.sh --network real --minutes 2 [--seed N] [--nemesis mixed|link-loss|...]
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
args=()
network=loopback
while [ $# -gt 0 ]; do
  case "$1" in
    --network) network="$2"; shift 2 ;;
    --network=*) network="${1#--network=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$network" in
  real) exec python -m raftkv.chaos.netnemesis --png "${args[@]}" ;;
  loopback) exec python tests/integration/nemesis.py --png "${args[@]}" ;;
  *) echo "--network must be loopback or real" >&2; exit 2 ;;
esac
