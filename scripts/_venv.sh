# Sourced by the scripts: make sure the venv exists and holds raftkv with its
# test extra, then put its bin/ first on PATH. The venv is .venv at the
# repository's root; RAFTKV_VENV moves it (the test of this file does).
#
# Scripts started at the same moment -- the README's three backgrounded
# start scripts on a fresh clone -- must not build the venv side by side:
# two pips in one venv break each other. The set-up therefore runs under an
# exclusive lock on a file beside the venv (.venv.lock): the first script
# builds it, the others wait for the lock, find the venv ready and use it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RAFTKV_VENV:-$ROOT/.venv}"

_raftkv_venv_ready() {
  [ -x "$VENV/bin/raftkv" ] && ! [ "$ROOT/pyproject.toml" -nt "$VENV/.installed" ]
}

# _raftkv_lock [-n]: take the lock open on fd 9, waiting for it (-n: fail at
# once if it is held). flock(1) is util-linux's; where it is missing (macOS)
# Python's flock takes the same lock on the same open file, which stays held
# after python3 exits because this shell keeps fd 9 open.
_raftkv_lock() {
  if command -v flock >/dev/null 2>&1; then
    flock "$@" 9
  else
    python3 -c 'import fcntl, sys
try:
    fcntl.flock(9, fcntl.LOCK_EX | (fcntl.LOCK_NB if sys.argv[1:] == ["-n"] else 0))
except BlockingIOError:
    sys.exit(1)' "$@"
  fi
}

if ! _raftkv_venv_ready; then
  mkdir -p "$(dirname "$VENV")"
  # A subshell holds the lock, so it is released when the set-up ends (and
  # never inherited by what the sourcing script runs next, a node that would
  # hold it for its whole life). Errors are checked by hand: set -e does not
  # act inside a command whose status is tested.
  if ! (
    if ! _raftkv_lock -n; then
      echo "waiting for another script to finish setting up ${VENV#"$ROOT"/} ..." >&2
      _raftkv_lock || exit 1
    fi
    if ! _raftkv_venv_ready; then
      echo "setting up ${VENV#"$ROOT"/} (about 40 s, once) ..." >&2
      python3 -m venv "$VENV" >&2 &&
        { "$VENV/bin/pip" install -q --upgrade pip >&2 || true; } &&
        "$VENV/bin/pip" install -q -e "$ROOT[test]" >&2 &&
        touch "$VENV/.installed"
    fi
  ) 9>"$VENV.lock"; then
    echo "could not set up $VENV (see the lines above); run the script again once that is fixed" >&2
    unset -f _raftkv_venv_ready _raftkv_lock
    return 1
  fi
fi
unset -f _raftkv_venv_ready _raftkv_lock
export PATH="$VENV/bin:$PATH"
