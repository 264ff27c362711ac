#!/usr/bin/env bash
# Start raftkv node n3: HTTP 8002, Raft 9002, data in /tmp/node3;
# join it with: curl "http://localhost:8000/join?nodeId=n3&raftPort=9002".
# Variables already set in the environment win (as in the seed demo);
# CLEAN=1 wipes the volume first. Extra arguments go to `raftkv serve`.
set -euo pipefail
export HTTP_SERVER_PORT="${HTTP_SERVER_PORT:-8002}"
export RAFT_SERVER_PORT="${RAFT_SERVER_PORT:-9002}"
export RAFT_NODE_ID="${RAFT_NODE_ID:-n3}"
export RAFT_VOLUME_DIR="${RAFT_VOLUME_DIR:-/tmp/node3}"
source "$(dirname "$0")/_start_node.sh"
