# Sourced by startn1/2/3.sh after they set their defaults: CLEAN=1 wipes the
# volume, then the node runs in the foreground. Extra arguments go to `raftkv serve`.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
echo "Starting node${RAFT_NODE_ID#n}"
if [ "${CLEAN:-0}" = "1" ]; then
  case "$RAFT_VOLUME_DIR" in
    ""|"/"|"$HOME") echo "refusing to clean RAFT_VOLUME_DIR=$RAFT_VOLUME_DIR" >&2; exit 2 ;;
  esac
  echo "Cleaning the raft volumes."
  rm -rf "$RAFT_VOLUME_DIR"
fi
# The nodes started by these scripts prove a shared key on the Raft port, so
# that nothing else on this machine can pose as one of them (docs/security.md);
# the HTTP routes, /join included, stay open as in the walkthrough. The key
# lives in a file only this user can read, made by the first node to start.
if [ -z "${RAFT_CLUSTER_KEY:-}${RAFT_PEER_KEY:-}${RAFT_TLS_CERT_FILE:-}" ] \
    && [ "${RAFT_PROTOCOL:-raftkv}" != "hashicorp" ] && [ "${RAFTKV_PEER_KEY_FILE:-}" != "none" ]; then
  key_file="${RAFTKV_PEER_KEY_FILE:-${TMPDIR:-/tmp}/raftkv-$(id -u).peer-key}"
  if [ ! -s "$key_file" ]; then
    # written aside and moved into place without replacing: nodes starting
    # together all end up with the first one's key
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$key_file.$$" \
      && mv -n "$key_file.$$" "$key_file"; rm -f "$key_file.$$")
  fi
  RAFT_PEER_KEY="$(cat "$key_file")"
  export RAFT_PEER_KEY
  echo "The Raft port proves the key in $key_file (RAFT_PEER_KEY; RAFTKV_PEER_KEY_FILE=none for none)."
fi
exec raftkv serve "$@"
