#!/usr/bin/env bash
# The test suite (CPU only, tiny models, generated media).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
exec .venv/bin/python -m pytest -q "$@"
