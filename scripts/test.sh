#!/usr/bin/env bash
# Set up the environment (if needed), check formatting and lint (ruff), then run the test suite on CPU.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k ssm`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
python="${VENV:-$root/.venv}/bin/python"
"$python" -m ruff format --check --quiet . || { echo "[test] ruff format: run '$python -m ruff format .'" >&2; exit 1; }
"$python" -m ruff check --quiet . || { echo "[test] ruff check found problems (above)" >&2; exit 1; }
exec "$python" -m pytest "$@"
