#!/usr/bin/env bash
# Write N keys (default 1000) to a raftkv node and report the rate and latency:
#   scripts/pump.sh [N]         ADDR=http://127.0.0.1:8000  PARALLEL=1
# Writes /set?key=$i&value=$i for i = 1..N over keep-alive HTTP connections
# with `raftkv bench --pump` (PARALLEL closed-loop clients, each with one
# write in flight), so the figure is raftkv's commit latency, not a client's
# start-up cost. PARALLEL=8 keeps 8 writes in flight, which shows group
# commit at work. Any node will do: followers forward writes to the leader.
# For other loads (reads, key spaces, value sizes, durations) use
# `raftkv bench` directly; see docs/performance.md.
set -euo pipefail
N="${1:-${N:-1000}}"
ADDR="${ADDR:-http://127.0.0.1:8000}"
PARALLEL="${PARALLEL:-1}"
case "$N" in ''|*[!0-9]*|0) echo "usage: $0 [N]  (N must be a positive number)" >&2; exit 2 ;; esac
case "$PARALLEL" in ''|*[!0-9]*|0) echo "PARALLEL must be a positive number" >&2; exit 2 ;; esac
source "$(dirname "$0")/_venv.sh"

result="$(raftkv bench --addr "$ADDR" --pump -n "$N" -c "$PARALLEL" --json -q)" || true
python - "$N" "$result" <<'PY'
import json, sys
n = int(sys.argv[1])
try:
    r = json.loads(sys.argv[2])
except ValueError:
    print("pump: raftkv bench gave no result", file=sys.stderr)
    sys.exit(1)
t = max(r["duration_s"], 1e-9)
ok = r["ops"]
print("%d writes (%d ok) in %.2f seconds: %.1f writes/s" % (n, ok, t, ok / t))
lat = r["latency_ms"]
print("latency ms: p50=%.2f p90=%.2f p99=%.2f max=%.2f  errors=%d%s" % (
    lat["p50"], lat["p90"], lat["p99"], lat["max"], r["errors"],
    "".join(" %s=%d" % kv for kv in r["error_kinds"].items())))
if ok != n:
    print("%d writes failed" % (n - ok), file=sys.stderr)
    sys.exit(1)
PY
