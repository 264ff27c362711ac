#!/usr/bin/env bash
# Run raftkv nodes as separate hosts on this machine: each node in its own
# network namespace (10.77.0.11, .12, ... on a bridge inside a namespace of
# its own), reachable from here through 127.0.0.1 ports it prints.
#   sudo scripts/netcluster.sh [--nodes 3] [--dir DIR] [--seed N]
# Ctrl-C removes every namespace, link and process. Needs root and iproute2.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
exec python -m raftkv.chaos.netns "$@"
