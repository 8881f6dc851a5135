#!/usr/bin/env bash
# Issue 16 item 6: every GPU measurement in ONE short run, for BENCHMARKS.md
# ("measured vs simulated"). Prepared in a session without a GPU: NOT RUN YET.
#
#   OUT=/tmp/gpu_out bash benchmarks/gpu_all.sh          # ~8 min on one H100/H200
#   GPU_ALL_BUDGET_S=400 OUT=... bash benchmarks/gpu_all.sh   # shorter: each step gets a share
#
# Runs, each under its own timeout so one hang cannot eat the device time:
#   1. gpu_sdxl_steps.py: SDXL UNet step time / peak, direct vs FreeScale stage, ladder vs direct 4096²
#   2. gpu_wan_steps.py:  Wan 2.1 1.3B step time / peak at 480x832, 1088x1920 (81 f), 2176x3840 (what fits)
#   3. bench_memory.py --device cuda: the memory planner's estimate vs torch.cuda.max_memory_allocated
# and writes into $OUT: one file per step (.json / .md / .log), env.txt (card, driver, versions) and
# summary.md (exit code and seconds per step), to paste next to the simulated table in BENCHMARKS.md.
# Needs torch with CUDA and diffusers; exits 2 without a CUDA device (nothing else is run then).
set -u
OUT=${OUT:?set OUT to the folder for the results}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
BUDGET=${GPU_ALL_BUDGET_S:-540}
export PYTHONPATH="$PWD:$PWD/plugins/cinescale-sdxl:$PWD/plugins/cinescale-wan${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 2)"; then
    echo "gpu_all.sh: no CUDA device visible to $PY (torch.cuda.is_available() is False): nothing run" >&2
    exit 2
fi
{
    date -u +"%Y-%m-%d %H:%M UTC"; hostname
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
    "$PY" -c "import torch, diffusers, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__)"
    git rev-parse --short HEAD 2>/dev/null || true
} > "$OUT/env.txt" 2>&1

echo "| step | command | exit | seconds |" > "$OUT/summary.md"
echo "|---|---|---|---|" >> "$OUT/summary.md"
step() {  # step NAME SHARE_OF_BUDGET(%) COMMAND... : stdout+stderr to $OUT/NAME.log
    local name=$1 share=$2; shift 2
    local limit=$(( BUDGET * share / 100 )) t0=$SECONDS rc
    timeout --signal=TERM --kill-after=15 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    [ $rc -eq 124 ] && echo "(stopped after ${limit}s: GPU_ALL_BUDGET_S share)" >> "$OUT/$name.log"
    echo "| $name | \`$*\` | $rc | $(( SECONDS - t0 )) |" >> "$OUT/summary.md"
    echo "gpu_all.sh: $name exit $rc in $(( SECONDS - t0 )) s" >&2
}

# shares sum to 100: SDXL 4096² steps dominate; Wan stops starting new sizes at its --budget-s
step gpu_sdxl_steps 40 "$PY" benchmarks/gpu_sdxl_steps.py --sizes 1024 2048 4096 --steps 2 --out "$OUT/gpu_sdxl_steps.json"
step gpu_wan_steps 40 "$PY" benchmarks/gpu_wan_steps.py --steps 1 --warmup 1 --budget-s $(( BUDGET * 30 / 100 )) \
    --json "$OUT/gpu_wan_steps.json"
step bench_memory_cuda 20 "$PY" benchmarks/bench_memory.py --device cuda
cp "$OUT/bench_memory_cuda.log" "$OUT/bench_memory_cuda.md" 2>/dev/null || true
cat "$OUT/summary.md"
