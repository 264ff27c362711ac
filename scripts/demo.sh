#!/usr/bin/env bash
# A 3-node raftkv cluster on the default ports, as in the seed walkthrough:
# starts n1 (bootstraps), n2 and n3 in the background with CLEAN=1, logging to
# /tmp/raftkv-demo/n1.log n2.log n3.log, waits for n1 to lead, joins n2 and
# n3 with curl, writes and reads a key, prints /status, then keeps running
# until Ctrl-C and stops all three nodes.  Follow along with:
#   tail -f /tmp/raftkv-demo/n*.log
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/_venv.sh"
LOGS="${LOGS:-/tmp/raftkv-demo}"
mkdir -p "$LOGS"
export LOG_LEVEL="${LOG_LEVEL:-DEBUG}"

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping the cluster."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

for n in 1 2 3; do
  # each script picks its own ports and volume; don't leak ours into it
  env -u HTTP_SERVER_PORT -u RAFT_SERVER_PORT -u RAFT_NODE_ID -u RAFT_VOLUME_DIR \
    CLEAN=1 "$HERE/startn$n.sh" >"$LOGS/n$n.log" 2>&1 &
  pids+=("$!")
done
echo "Started n1 n2 n3 (pids ${pids[*]}); logs in $LOGS/"

wait_for() {  # wait_for <what> <command...>: poll for up to 30 s
  local what="$1"; shift
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what; see $LOGS/" >&2
  exit 1
}
wait_for "n1 to become leader" sh -c 'curl -sf http://127.0.0.1:8000/status | grep -q "\"state\": \"Leader\""'
wait_for "n2 to listen" curl -sf http://127.0.0.1:8001/status
wait_for "n3 to listen" curl -sf http://127.0.0.1:8002/status

echo '$ curl "http://localhost:8000/join?nodeId=n2&raftPort=9001"'
curl -sS "http://localhost:8000/join?nodeId=n2&raftPort=9001"
echo '$ curl "http://localhost:8000/join?nodeId=n3&raftPort=9002"'
curl -sS "http://localhost:8000/join?nodeId=n3&raftPort=9002"
echo '$ curl "http://localhost:8000/set?key=hello&value=world"'
curl -sS "http://localhost:8000/set?key=hello&value=world"
wait_for "n2 to know the leader" sh -c 'curl -sf "http://127.0.0.1:8001/get?key=hello"'
echo '$ curl "http://localhost:8001/get?key=hello"        (a follower: forwarded to the leader)'
curl -sS "http://localhost:8001/get?key=hello"
echo '$ curl "http://localhost:8002/get?key=hello&stale=true"   (local read)'
curl -sS "http://localhost:8002/get?key=hello&stale=true"
echo '$ curl "http://localhost:8000/status"'
curl -sS "http://localhost:8000/status"
echo
echo "The cluster is running; autopilot promotes n2 and n3 to voters once they are stable."
echo "Try scripts/pump.sh, or kill the leader and watch the logs. Ctrl-C stops all three."
wait
