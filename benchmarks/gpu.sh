#!/usr/bin/env bash
# The speed and memory benchmarks on one CUDA GPU, in fp32 and bf16, in under 5 minutes.
#
# The GPU machine has Python 3.12 with torch 2.11 (CUDA), torchaudio, transformers, numpy, scipy, matplotlib,
# scikit-learn, OpenCV, ... but no network, and lacks a few of the project's dependencies. Prepare their wheels
# ONCE, on a machine with network access, from the repository root:
#
#     bash benchmarks/gpu.sh --prepare
#
# This puts the wheels of PURE_WHEELS and BINARY_WHEELS below into benchmarks/wheels/ (about 3 MB; keep that
# folder out of git). The project itself is not installed there: it is imported from the working tree, so the
# code measured is the code you have.
#
# Then, on the GPU machine, from the repository root with benchmarks/wheels/ copied along:
#
#     bash benchmarks/gpu.sh [OUT_DIR]          # default OUT_DIR: results/benchmarks/gpu
#
# It writes to OUT_DIR: explain_speed_cuda.csv and train_speed_cuda.csv (fp32 and bf16 rows), eval_memory_cuda.csv,
# *_profile.md, train_speed_cuda_breakdown.md, versions.txt and gpu.log. Each step has its own time limit (290 s
# together) and a failed step does not stop the others. Where a remote runner returns only a few files, pack them:
#
#     bash benchmarks/gpu.sh /tmp/gpu_bench; tar -czf gpu_bench.tgz -C /tmp gpu_bench
#
# `bash benchmarks/gpu.sh --check [OUT_DIR]` runs the same steps on the CPU with tiny models and without the
# wheels (the current Python environment must have the dependencies): a test of this script, not of a GPU.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEEL_DIR="$ROOT/benchmarks/wheels"
# Missing from the GPU image (checked against its package list); versions as in the project's environment.
# Pure-Python ones are built with `pip wheel --no-deps` (grad-cam is published as a source archive only); the two
# with compiled parts are downloaded for the GPU machine's CPython 3.12.
PURE_WHEELS=(
    "speechbrain==1.1.2"
    "hyperpyyaml==1.2.3"
    "ruamel.yaml==0.18.17"
    "captum==0.9.0"
    "grad-cam==1.5.7"
    "ttach==0.0.3"
    "pycparser==3.12"
)
BINARY_WHEELS=(
    "soundfile==0.14.0"
    "cffi==2.1.1"
)

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$WHEEL_DIR"
    python3 -m pip wheel --no-deps -w "$WHEEL_DIR" "${PURE_WHEELS[@]}" || exit 1
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEEL_DIR" "${BINARY_WHEELS[@]}" || exit 1
    ls -l "$WHEEL_DIR"
    exit 0
fi

DEVICE=cuda
LIMIT_SCALE=1
EXPLAIN_ARGS=(--threads 8 --batches 1 16 --repeats 5)
TRAIN_ARGS=(--threads 8 --batches 2 8 32 64 --pairs 1 2 full --repeats 3)
MEMORY_ARGS=(--threads 8 --size full --clips 8 --batch 4)
if [[ "${1:-}" == "--check" ]]; then
    DEVICE=cpu
    LIMIT_SCALE=10  # a shared CPU is far slower than the GPU the limits are sized for
    EXPLAIN_ARGS=(--quick)
    TRAIN_ARGS=(--quick)
    MEMORY_ARGS=(--quick)
    shift
fi
OUT_DIR="${1:-$ROOT/results/benchmarks/gpu}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu.log"
cd "$ROOT" || exit 1
export PYTHONUNBUFFERED=1

PYTHON="${PYTHON:-python3}"
SITE="$(mktemp -d)"
if [[ "$DEVICE" == cuda ]]; then
    if ! ls "$WHEEL_DIR"/*.whl >/dev/null 2>&1; then
        echo "No wheels in $WHEEL_DIR: run 'bash benchmarks/gpu.sh --prepare' on a machine with network first." >&2
        exit 1
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
        "$WHEEL_DIR"/*.whl || exit 1
fi
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"

{
    date -u +"%Y-%m-%d %H:%M UTC"
    [[ "$DEVICE" == cuda ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PYTHON" -c "import sys, torch, transformers, speechbrain, captum; print('python', sys.version.split()[0]); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and \
torch.cuda.get_device_name(0)); print('transformers', transformers.__version__, 'speechbrain', \
speechbrain.__version__, 'captum', captum.__version__)"
} > "$OUT_DIR/versions.txt" 2>&1
cat "$OUT_DIR/versions.txt"

# step LIMIT_SECONDS NAME COMMAND...: run one benchmark with a time limit, log it, keep going if it fails.
step() {
    local limit="$1" name="$2"
    shift 2
    echo "=== $name ($(date -u +%T))" | tee -a "$LOG"
    timeout "$((limit * LIMIT_SCALE))" "$@" 2>&1 | tee -a "$LOG"
    local status="${PIPESTATUS[0]}"
    [[ "$status" == 0 ]] || echo "=== $name FAILED or timed out (exit $status)" | tee -a "$LOG"
}

START=$SECONDS
# One process per script measures both precisions on the same models (building them is the slow part).
step 110 "explain_speed" "$PYTHON" benchmarks/explain_speed.py --device "$DEVICE" --precision fp32 bf16 --profile \
    "${EXPLAIN_ARGS[@]}" --out "$OUT_DIR/explain_speed_$DEVICE.csv"
step 100 "train_speed" "$PYTHON" benchmarks/train_speed.py --device "$DEVICE" --precision fp32 bf16 --breakdown \
    --profile "${TRAIN_ARGS[@]}" --out "$OUT_DIR/train_speed_$DEVICE.csv"
step 80 "eval_memory" "$PYTHON" benchmarks/eval_memory.py --device "$DEVICE" "${MEMORY_ARGS[@]}" \
    --out "$OUT_DIR/eval_memory_$DEVICE.csv"
echo "=== done in $((SECONDS - START)) s; results in $OUT_DIR" | tee -a "$LOG"
rm -rf "$SITE"
