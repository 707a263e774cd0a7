#!/usr/bin/env bash
# Create ./.venv (Python >= 3.11) and install stn3dmm into it, once; later calls are no-ops
# unless pyproject.toml changed. Sourced by ./run-demo and ./run-tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py=""
for c in python3.11 python3.12 python3.13 python3; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then py="$c"; break; fi
done
[ -n "$py" ] || { echo "stn3dmm needs Python 3.11 or newer on PATH" >&2; exit 1; }
stamp="$venv/.stn3dmm-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Setting up $venv (once) ..." >&2
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  # torch first, pinned: on this project's machines 2.13.0 is a local CPU build
  "$venv/bin/python" -m pip install --quiet "torch==2.13.0"
  "$venv/bin/python" -m pip install --quiet -e "$root[test,samples,ship]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
