#!/usr/bin/env bash
# Start raftkv node n1: HTTP 8000, Raft 9000, data in /tmp/node1;
# it bootstraps a one-voter cluster when its volume is empty.
# Variables already set in the environment win (as in the seed demo);
# CLEAN=1 wipes the volume first. Extra arguments go to `raftkv serve`.
set -euo pipefail
export HTTP_SERVER_PORT="${HTTP_SERVER_PORT:-8000}"
export RAFT_SERVER_PORT="${RAFT_SERVER_PORT:-9000}"
export RAFT_NODE_ID="${RAFT_NODE_ID:-n1}"
export RAFT_VOLUME_DIR="${RAFT_VOLUME_DIR:-/tmp/node1}"
export RAFT_BOOTSTRAP="${RAFT_BOOTSTRAP:-true}"
source "$(dirname "$0")/_start_node.sh"
