#!/usr/bin/env bash
# Write N keys (default 1000) to a raftkv node with curl and report the rate:
#   scripts/pump.sh [N]         ADDR=http://127.0.0.1:8000  PARALLEL=1
# Writes go to /set?key=$i&value=$i one after another over one keep-alive
# connection (a curl config file with one URL per write), so the figure is
# raftkv's commit latency rather than curl's start-up cost. PARALLEL=8 lets
# curl keep 8 writes in flight, which shows group commit at work. Any node
# will do: followers forward writes to the leader.
set -euo pipefail
N="${1:-${N:-1000}}"
ADDR="${ADDR:-http://127.0.0.1:8000}"
PARALLEL="${PARALLEL:-1}"
case "$N" in ''|*[!0-9]*) echo "usage: $0 [N]  (N must be a number)" >&2; exit 2 ;; esac

cfg="$(mktemp)"
trap 'rm -f "$cfg"' EXIT
for ((i = 1; i <= N; i++)); do
  printf 'url = "%s/set?key=%d&value=%d"\noutput = "/dev/null"\n' "$ADDR" "$i" "$i"
done > "$cfg"

extra=()
if [ "$PARALLEL" -gt 1 ]; then extra=(--parallel --parallel-max "$PARALLEL" --no-progress-meter); fi
start=$(date +%s.%N)
codes="$(curl -sS "${extra[@]}" -K "$cfg" -w '%{http_code}\n' || true)"
end=$(date +%s.%N)

ok=$(grep -c '^200$' <<<"$codes" || true)
awk -v n="$N" -v ok="$ok" -v s="$start" -v e="$end" 'BEGIN {
  t = e - s; if (t <= 0) t = 1e-9
  printf "%d writes (%d ok) in %.2f seconds: %.1f writes/s\n", n, ok, t, ok / t
}'
if [ "$ok" -ne "$N" ]; then
  echo "$((N - ok)) writes failed" >&2
  exit 1
fi
