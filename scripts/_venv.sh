# Sourced by the other scripts: creates .venv (once) and installs the pinned packages and attnrnn into it.
# Set ATTNRNN_VENV to put the venv elsewhere, PYTHON to choose the interpreter (3.10-3.13).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${ATTNRNN_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.attnrnn-installed"
want=$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha1sum | cut -c1-40)
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing pinned packages (first run: ~1-3 min)" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.lock"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2} PYTHONWARNINGS=${PYTHONWARNINGS:-ignore}
