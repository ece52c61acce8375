#!/usr/bin/env bash
# GPU checks in one call on a machine with a CUDA GPU (CUDA torch, triton, numba, pytest and MONAI
# installed; mamba_ssm not needed), at most 9 minutes in all (the step limits add up to 540 s):
#   1. the GPU's name and the software versions;
#   2. the GPU tests (pytest -m gpu: Triton scan against the torch backend at (2,128,4096,16) and
#      (1,256,32768,16) in fp32/bf16, the torch backend on CUDA against the CPU kernels);
#   3. the Triton scan against the torch backend with timings (benchmarks/gpu_check.py);
#   4. the whole BraTS-sized case and the fp32/bf16 training step at 1x4x128^3 on CUDA, nnMambaSeg
#      against MONAI's SegResNet (benchmarks/bench_case.py --device cuda).
# Every step runs under its own time limit and goes on after a failure. The figures go to
# OUT_DIR/gpu_figures.txt (the tail of each step's output and its exit status), each step's full log
# to OUT_DIR/<step>.log and the scan figures to OUT_DIR/scan.json.
#
# Usage: benchmarks/gpu_check.sh [OUT_DIR]     (default: $OUT, else ./gpu_check_out)
#        PYTHON=/path/to/python benchmarks/gpu_check.sh out
# Without a GPU every step reports that it skipped (exit 0), which is how it is tested on CPU.
set -u -o pipefail

OUT_DIR="${1:-${OUT:-gpu_check_out}}"
PYTHON="${PYTHON:-python}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
FIGURES="$OUT_DIR/gpu_figures.txt"
cd "$(dirname "$0")/.." || exit 1

# run NAME SECONDS COMMAND...: the command's output to NAME.log, its tail and exit status to the figures.
run() {
    local name="$1" limit="$2"
    shift 2
    echo "== $name: $*" | tee -a "$FIGURES"
    timeout "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    local status=$?
    tail -n 40 "$OUT_DIR/$name.log" >> "$FIGURES"
    echo "== $name: exit status $status$([ "$status" -eq 124 ] && echo " (time limit ${limit}s)")" | tee -a "$FIGURES"
    return 0
}

{
    echo "gpu_check.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} > "$FIGURES"
run device 60 "$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPU:',
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none (torch.cuda.is_available() is False)')"
run info 60 "$PYTHON" -m nnmamba_nets info
run gpu_tests 150 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests/ssm tests/nets
run scan 90 "$PYTHON" benchmarks/gpu_check.py --json "$OUT_DIR/scan.json"
if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    run case 180 "$PYTHON" benchmarks/bench_case.py --device cuda --repeats 3
else
    echo "== case: skipped, no CUDA device (torch.cuda.is_available() is False)" | tee -a "$FIGURES"
fi
echo "figures: $FIGURES"
