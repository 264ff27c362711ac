#!/usr/bin/env bash
# Start raftkv node n2: HTTP 8001, Raft 9001, data in /tmp/node2;
# join it with: curl "http://localhost:8000/join?nodeId=n2&raftPort=9001".
# Variables already set in the environment win (as in the seed demo);
# CLEAN=1 wipes the volume first. Extra arguments go to `raftkv serve`.
set -euo pipefail
export HTTP_SERVER_PORT="${HTTP_SERVER_PORT:-8001}"
export RAFT_SERVER_PORT="${RAFT_SERVER_PORT:-9001}"
export RAFT_NODE_ID="${RAFT_NODE_ID:-n2}"
export RAFT_VOLUME_DIR="${RAFT_VOLUME_DIR:-/tmp/node2}"
source "$(dirname "$0")/_start_node.sh"
