#!/usr/bin/env bash
# The GPU table of docs/benchmarks.md: ResNet-50 against Oct-ResNet-50 at alpha .5 on one GPU, training at batch
# 256 in bfloat16 autocast and channels_last (eager, torch.compile, torch.compile with CUDA graphs) and batch-1
# inference (eager, CUDA graphs); per row images/s, host ms per step, CUDA kernels and launches per step, peak
# memory, compiled graphs and CUDA-graph skips (octzoo/bench/gpu.py says how each is measured).
#
#   scripts/gpu_bench.sh [OUT] [-- EXTRA ARGS]
#
# Runs `python -m octzoo.bench.gpu` under `timeout` (OCTZOO_GPU_BENCH_S seconds, default 360); each row is
# appended to OUT/gpu-bench.md (and OUT/gpu-bench.jsonl) as soon as it is measured, so a run cut by the limit
# still reports every row it finished. EXTRA ARGS go to the module: --dry-run runs the same code on the CPU with
# tiny sizes (no GPU needed), --modes / --tasks pick rows. PYTHON picks the interpreter (default python3; it needs
# torch, timm and safetensors); octzoo is imported from this checkout. OUT defaults to bench-results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:-bench-results}
shift $(($# < 1 ? $# : 1))
[[ ${1:-} == -- ]] && shift
PYTHON=${PYTHON:-python3}
LIMIT=${OCTZOO_GPU_BENCH_S:-360}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
rm -f "$OUT/gpu-bench.md" "$OUT/gpu-bench.jsonl"
status=0
timeout --kill-after=15 "$LIMIT" "$PYTHON" -m octzoo.bench.gpu --out "$OUT" "$@" >/dev/null || status=$?
if ((status == 124 || status == 137)); then
  echo "stopped after the ${LIMIT} s limit; the rows below are those that finished" >&2
fi
[[ ! -f $OUT/gpu-bench.md ]] || cat "$OUT/gpu-bench.md"
exit $status
