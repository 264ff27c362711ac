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
exec raftkv serve "$@"
