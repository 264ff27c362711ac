# Sourced by the scripts: make sure .venv exists and holds raftkv with its test extra.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/raftkv" ] || [ "$ROOT/pyproject.toml" -nt "$VENV/.installed" ]; then
  echo "setting up $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2 || true
  "$VENV/bin/pip" install -q -e "$ROOT[test]" >&2
  touch "$VENV/.installed"
fi
export PATH="$VENV/bin:$PATH"
