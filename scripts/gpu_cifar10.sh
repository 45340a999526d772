#!/usr/bin/env bash
# Train the three published CIFAR-10 models (resnet20, oct_resnet20 at alpha .25 and .5) with the full-length
# recipe (configs/cifar10/recipe_gpu.yaml) side by side on one GPU, then pack their run folders for publishing.
#
#   scripts/gpu_cifar10.sh DATA [OUT] [-- EXTRA LightningCLI ARGS]
#
# DATA: the CIFAR-10 folder or archive (e.g. ../shared/data/cifar10-jpeg.tar.gz). OUT (default runs/cifar10_gpu)
# receives one log per model and cifar10_gpu_runs.tar.gz (summary.json, metrics.csv, config.yaml and
# checkpoints/last.ckpt of each run). OCTZOO_MAX_TIME (default 00:00:07:00, Lightning's DD:HH:MM:SS) stops
# every run cleanly when the time is up; a stopped run resumes with --ckpt_path .../last.ckpt. PYTHON picks the
# interpreter (default python3); octzoo is imported from this checkout, so it needs no install. Runs land in
# runs/cifar10_gpu/ under the working directory (the repository root, to publish them).
# Publishing from the unpacked runs: docs/pretrained.md, "Publishing a weight".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONFIGS=$(realpath --relative-to="$PWD" "$ROOT/configs/cifar10")  # relative, as run records name their configs
DATA=${1:?usage: scripts/gpu_cifar10.sh DATA [OUT] [-- EXTRA ARGS]}
OUT=${2:-runs/cifar10_gpu}
shift $(($# < 2 ? $# : 2))
[[ ${1:-} == -- ]] && shift
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=${WANDB_MODE:-offline}
mkdir -p "$OUT"

# Decode and cache the data once, before three processes would each do it.
"$PYTHON" -c "import sys; from octzoo.data import CIFAR10DataModule as D; D(data_dir=sys.argv[1]).prepare_data()" "$DATA"

fit() {  # fit LOGNAME MODEL_CONFIG [ARGS...]
  local log=$OUT/$1.log config=$2
  shift 2
  "$PYTHON" -m octzoo fit --config "$CONFIGS/$config.yaml" --config "$CONFIGS/recipe_gpu.yaml" \
    --data.data_dir "$DATA" --trainer.accelerator gpu --trainer.devices 1 \
    --trainer.max_time "${OCTZOO_MAX_TIME:-00:00:07:00}" "$@" >"$log" 2>&1
}
start=$SECONDS
fit resnet20 resnet20 "$@" &
fit oct_resnet20_a0.25 oct_resnet20 --model.model_kwargs.alpha 0.25 "$@" &
fit oct_resnet20_a0.5 oct_resnet20 --model.model_kwargs.alpha 0.5 "$@" &
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
echo "trained in $((SECONDS - start)) s (exit status $status)"

runs=$(find runs/cifar10_gpu -mindepth 2 -maxdepth 2 -name 'version_*' | sort)
tar czf "$OUT/cifar10_gpu_runs.tar.gz" --ignore-failed-read \
  $(for r in $runs; do for f in summary.json metrics.csv config.yaml checkpoints/last.ckpt; do echo "$r/$f"; done; done)
for r in $runs; do
  "$PYTHON" -c "import json, sys; s = json.load(open(sys.argv[1] + '/summary.json')); f = s['metrics']['final']
print(f\"{s['model']} a{s['alpha']}: {s['status']}, {s['epochs']} epochs, val top-1 {f.get('val/acc1', float('nan')):.4f}, {s['wall_time_s']:.0f} s\")" "$r"
done
exit $status
