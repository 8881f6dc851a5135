#!/usr/bin/env bash
# Creates .venv and installs cinescale-post, its first-party plugins and the
# test tools. Idempotent: a second run only checks. The CPU build of torch is
# pinned here (dev/CI path only); the package itself asks for torch>=2.4.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.cinescale-setup
want=$(cat pyproject.toml plugins/*/pyproject.toml scripts/setup.sh 2>/dev/null | sha1sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
plugins=()
for p in plugins/*/; do
  [ -f "$p/pyproject.toml" ] && plugins+=(-e "$p")
done
# ray: the Ray executor's tests run on a real local cluster; editorial: conform's OTIO adapters
.venv/bin/python -m pip install -q -e ".[test,diffusion,ray,editorial]" "${plugins[@]}"
echo "$want" > "$stamp"
