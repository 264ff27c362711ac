#!/usr/bin/env bash
# Start a 3-node cluster for benchmarking and keep it running until Ctrl-C:
#   scripts/bench-cluster.sh      HTTP_BASE=18100 RAFT_BASE=19100 DIR=/tmp/raftkv-bench
# Nodes n1..n3 listen on HTTP_BASE+0..2 and RAFT_BASE+0..2, log at INFO to
# $DIR/nN.log, with fresh volumes under $DIR (wiped at start). Once all three
# are voters it prints "cluster ready" and the leader's address; then e.g.
#   scripts/raftkv bench --addr 127.0.0.1:18100 -c 64 -d 10
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
HTTP_BASE="${HTTP_BASE:-18100}"
RAFT_BASE="${RAFT_BASE:-19100}"
DIR="${DIR:-/tmp/raftkv-bench}"
case "$DIR" in ""|"/"|"$HOME") echo "refusing DIR=$DIR" >&2; exit 2 ;; esac
rm -rf "$DIR"; mkdir -p "$DIR"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
for i in 1 2 3; do
  env RAFT_NODE_ID="n$i" HTTP_SERVER_PORT=$((HTTP_BASE + i - 1)) RAFT_SERVER_PORT=$((RAFT_BASE + i - 1)) \
      RAFT_VOLUME_DIR="$DIR/n$i" RAFT_BOOTSTRAP=$([ $i = 1 ] && echo true || echo false) \
      RAFT_SERVER_STABILIZATION_TIME="${RAFT_SERVER_STABILIZATION_TIME:-1s}" LOG_LEVEL="${LOG_LEVEL:-INFO}" \
      raftkv serve >"$DIR/n$i.log" 2>&1 &
  pids+=($!)
done
leader="127.0.0.1:$HTTP_BASE"
until curl -fsS "http://$leader/status" 2>/dev/null | grep -q '"state": "Leader"'; do sleep 0.2; done
for i in 2 3; do
  until curl -fsS "http://$leader/join?nodeId=n$i&raftPort=$((RAFT_BASE + i - 1))" >/dev/null 2>&1; do sleep 0.2; done
done
until [ "$(curl -fsS "http://$leader/status" | grep -o '"Voter"' | wc -l)" = 3 ]; do sleep 0.2; done
until [ "$(curl -fsS "http://$leader/peers" | grep -o '"http": "' | wc -l)" = 3 ]; do sleep 0.2; done
echo "cluster ready: leader $leader (pids ${pids[*]})"
wait
