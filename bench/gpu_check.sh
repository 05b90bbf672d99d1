#!/usr/bin/env bash
# The engine on a GPU: deeplab crop 512, batch 8 + 8, bf16, 200 steps; scoring 2048x1024 images.
# Samples nvidia-smi every 200 ms meanwhile and reports the GPU busy share. Never part of the tests.
#   bench/gpu_check.sh [out-dir] [extra args for bench/gpu_check.py, e.g. --compile]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}; shift || true
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/smi.csv" &
SMI=$!
trap 'kill $SMI 2>/dev/null || true' EXIT
"$PY" bench/gpu_check.py --out "$OUT/gpu_check.json" "$@" 2>&1 | tee "$OUT/gpu_check.log"
kill $SMI 2>/dev/null || true
awk -F', ' '{n++; s+=$1; if ($1>0) busy++} END {if (n) printf "nvidia-smi: %d samples, mean utilization %.1f%%, busy in %.1f%% of samples\n", n, s/n, 100*busy/n}' "$OUT/smi.csv" | tee "$OUT/smi_summary.txt"
