#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) for CPU use.
# Re-installs only when requirements*.txt or pyproject.toml changed since the last run.
# Usage: bash scripts/setup_env.sh   (VENV=path to use another folder)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
stamp="$venv/.nnmamba-setup-stamp"
want="$(cat "$root"/requirements.txt "$root"/requirements-dev.txt "$root"/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import nnmamba_nets" 2>/dev/null; then
  exit 0
fi
echo "[setup] installing into $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# Pin the CPU wheel first: an open torch range could otherwise pull a multi-GB CUDA build.
"$venv/bin/python" -m pip install -q "torch==2.13.0"
"$venv/bin/python" -m pip install -q -e "$root[test]"
echo "$want" > "$stamp"
