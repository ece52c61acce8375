#!/usr/bin/env bash
# Create or reuse the separate environment of the MONAI Label app (apps/monailabel).
#
# The environment lives outside the checkout so that every clone (CI runs included) reuses it:
#   ${NNMAMBA_MONAILABEL_VENV:-$HOME/.cache/nnmamba_nets/monailabel-venv}
# Packages are (re)installed only when apps/monailabel/requirements.txt changed since the last run
# (sha256 stamp); nnmamba_nets is re-linked to the current checkout with a cheap editable, --no-deps
# install (then import-checked) whenever the checkout path differs from the recorded one.
# Progress goes to stderr; the only line on stdout is the environment's folder.
# Usage: bash scripts/setup_monailabel_env.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NNMAMBA_MONAILABEL_VENV:-$HOME/.cache/nnmamba_nets/monailabel-venv}"
requirements="$root/apps/monailabel/requirements.txt"
stamp="$venv/.nnmamba-monailabel-stamp"
checkout_record="$venv/.nnmamba-checkout"

mkdir -p "$(dirname "$venv")"
# One set-up at a time per environment (parallel test workers, two clones on one machine).
exec 9>"$venv.lock"
flock 9

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x "$venv/bin/monailabel" ]; then
  echo "[setup_monailabel_env] installing into $venv (takes minutes the first time)" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -r "$requirements" >&2
  rm -f "$checkout_record"
  echo "$want" > "$stamp"
fi

if [ "$(cat "$checkout_record" 2>/dev/null)" != "$root" ]; then
  echo "[setup_monailabel_env] linking nnmamba_nets from $root" >&2
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" >&2
  "$venv/bin/python" -c "import monailabel, nnmamba_nets.nets, nnmamba_nets.landmarks.decode" >&2
  echo "$root" > "$checkout_record"
fi
echo "$venv"
