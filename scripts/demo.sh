#!/usr/bin/env bash
# A 3-node raftkv cluster on the default ports, as in the seed walkthrough:
# starts n1 (bootstraps), n2 and n3 in the background, logging to
# /tmp/raftkv-demo/n1.log n2.log n3.log, waits for n1 to lead, joins n2 and
# n3 with curl, writes and reads a key, waits until autopilot has promoted
# n2 and n3 to voters, prints the cluster and what to try next, then keeps
# running until Ctrl-C and stops all three nodes.
#
# The demo keeps its data in a directory of its own (mktemp, deleted on
# exit), never in /tmp/node1..3 where startn1-3.sh keep theirs, so the
# README's walkthrough afterwards starts from an empty cluster. The logs stay.
#
#   LOGS=/tmp/raftkv-demo          where the node logs go
#   HTTP_PORTS="8000 8001 8002"    HTTP ports of n1 n2 n3
#   RAFT_PORTS="9000 9001 9002"    Raft ports of n1 n2 n3
# Other settings (RAFT_SERVER_STABILIZATION_TIME, LOG_LEVEL, ...) pass through
# to the nodes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/_venv.sh"
LOGS="${LOGS:-/tmp/raftkv-demo}"
read -r -a http_ports <<<"${HTTP_PORTS:-8000 8001 8002}"
read -r -a raft_ports <<<"${RAFT_PORTS:-9000 9001 9002}"
export LOG_LEVEL="${LOG_LEVEL:-DEBUG}"
STABILIZATION="${RAFT_SERVER_STABILIZATION_TIME:-10s}"
if [ "${#http_ports[@]}" -ne 3 ] || [ "${#raft_ports[@]}" -ne 3 ]; then
  echo "HTTP_PORTS and RAFT_PORTS must each name three ports" >&2; exit 2
fi
for port in "${http_ports[@]}"; do
  if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/status"; then
    echo "Something already answers on port $port (nodes of the walkthrough?); stop it first." >&2
    exit 1
  fi
done
mkdir -p "$LOGS"
DATA="$(mktemp -d "${TMPDIR:-/tmp}/raftkv-demo-data.XXXXXX")"

pids=()
stop() {
  echo
  echo "Stopping the cluster."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DATA"
  echo "Deleted the demo's data ($DATA); the logs are still in $LOGS/."
}
trap stop EXIT
trap 'exit 0' INT TERM

for i in 0 1 2; do
  n=$((i + 1))
  # each node gets the demo's ports and a volume of the demo's own
  env -u RAFT_NODE_ID -u CLEAN HTTP_SERVER_PORT="${http_ports[$i]}" RAFT_SERVER_PORT="${raft_ports[$i]}" \
    RAFT_VOLUME_DIR="$DATA/node$n" RAFTKV_PEER_KEY_FILE="${RAFTKV_PEER_KEY_FILE:-$DATA/peer-key}" \
    "$HERE/startn$n.sh" >"$LOGS/n$n.log" 2>&1 &
  pids+=("$!")
done
h1="${http_ports[0]}"; h2="${http_ports[1]}"; h3="${http_ports[2]}"
echo "Started n1 n2 n3 (pids ${pids[*]}); their logs are in $LOGS/"
echo "The demo's data is in $DATA (deleted on exit)."

wait_for() {  # wait_for <seconds> <what> <command...>: poll, giving up if a node died
  local seconds="$1" what="$2"; shift 2
  for _ in $(seq 1 $((seconds * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    for i in 0 1 2; do
      if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        echo "n$((i + 1)) exited; see $LOGS/n$((i + 1)).log" >&2
        exit 1
      fi
    done
    sleep 0.1
  done
  echo "timed out waiting for $what; see $LOGS/" >&2
  exit 1
}
show() {  # show <curl args...>: print the command as a user would type it, then run it
  echo "\$ curl \"$1\""
  curl -sS "$1"
}
is_voter() {  # is_voter <id>: the leader's configuration lists it as a Voter
  curl -sf "http://127.0.0.1:$h1/peers" | python -c '
import json, sys
peers = {p["id"]: p["suffrage"] for p in json.load(sys.stdin)}
sys.exit(0 if peers.get(sys.argv[1]) == "Voter" else 1)' "$1"
}

wait_for 30 "n1 to become leader" sh -c "curl -sf http://127.0.0.1:$h1/status | grep -q '\"state\": \"Leader\"'"
wait_for 30 "n2 to listen" curl -sf "http://127.0.0.1:$h2/status"
wait_for 30 "n3 to listen" curl -sf "http://127.0.0.1:$h3/status"
echo
show "http://localhost:$h1/join?nodeId=n2&raftPort=${raft_ports[1]}"
show "http://localhost:$h1/join?nodeId=n3&raftPort=${raft_ports[2]}"
show "http://localhost:$h1/set?key=hello&value=world"
wait_for 30 "n2 to know the leader" curl -sf "http://127.0.0.1:$h2/get?key=hello"
echo "# n2 is a follower: it asks the leader for the read index, then serves the read itself"
show "http://localhost:$h2/get?key=hello"
echo "# stale=true: n3 answers from its own copy"
show "http://localhost:$h3/get?key=hello&stale=true"
echo
echo "n2 and n3 joined as nonvoters. Waiting for autopilot to promote them to voters:"
echo "each must stay healthy for $STABILIZATION (RAFT_SERVER_STABILIZATION_TIME) after it joined ..."
started=$SECONDS
wait_for 180 "autopilot to promote n2" is_voter n2
wait_for 180 "autopilot to promote n3" is_voter n3
echo "Promoted after $((SECONDS - started))s: see 'raft.autopilot: Promoting server' in n1.log."
echo
raftkv peers --addr "http://127.0.0.1:$h1"
cat <<EOF

Next:
  dashboard  http://localhost:$h1/ui
  learn      http://localhost:$h1/ui/learn   (learn Raft: a simulated cluster to steer, rewind and fork; lessons)
  logs       tail -f $LOGS/n*.log
  write      curl "http://localhost:$h1/set?key=user&value=kj"
  read       curl "http://localhost:$h2/get?key=user"
  members    curl "http://localhost:$h1/peers"     or: scripts/raftkv peers --addr localhost:$h1
  failover   kill ${pids[0]}    (n1, the leader), then watch n2 and n3 elect a new one
  stop       Ctrl-C stops all three and deletes the demo's data
EOF
wait
