#!/usr/bin/env bash
# The GPU benchmark of docs/benchmarks.md: every default row in eager mode, batch 1 and 64, float32 and
# bfloat16, training at batch 64; a few minutes on one GPU. Needs a Python with torch, timm and safetensors
# (PYTHON, default python3); octzoo is imported from this checkout. Writes OUT/bench-gpu-<dtype>.{csv,json,md}.
#
#   scripts/gpu_bench.sh [OUT]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:-bench-results}
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
for dt in float32 bfloat16; do
  "$PYTHON" -m octzoo bench --device cuda --dtype $dt --batch-size 64 --train all --train-batch-size 64 \
    --repeats 20 --no-channels-last --clock wall --out "$OUT/bench-gpu-$dt" | tee "$OUT/bench-gpu-$dt.md"
done
