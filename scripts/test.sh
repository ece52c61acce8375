#!/usr/bin/env bash
# Set up the environment (if needed) and run the test suite on CPU.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k ssm`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec "${VENV:-$root/.venv}/bin/python" -m pytest "$@"
