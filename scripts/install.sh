#!/usr/bin/env bash
# Install what tinyRLHF needs into the current Python. Usage: bash scripts/install.sh [--test]
# torch: an existing install is kept (CUDA or CPU, whatever you chose); with none, torch==2.13.0 is
# installed (from PyPI that is the CUDA build on Linux; on machines with a local CPU wheel, that one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
reqs=(-r requirements.txt)
if [ "${1:-}" = "--test" ]; then reqs+=(-r requirements-test.txt); fi
"$PY" -m pip install --quiet "${reqs[@]}"
