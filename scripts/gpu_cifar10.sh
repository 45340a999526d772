#!/usr/bin/env bash
# Train the three published CIFAR-10 models (resnet20, oct_resnet20 at alpha .25 and .5) with the full-length
# recipe (configs/cifar10/recipe_gpu.yaml) side by side on one GPU, then pack their run folders for publishing.
#
#   scripts/gpu_cifar10.sh DATA [OUT] [-- EXTRA LightningCLI ARGS]
#
# DATA: the CIFAR-10 folder or archive (e.g. ../shared/data/cifar10-jpeg.tar.gz). OUT (default runs/cifar10_gpu)
# receives one log per model and cifar10_gpu_runs.tar.gz (summary.json, metrics.csv, config.yaml and
# checkpoints/last.ckpt of each run). OCTZOO_MAX_TIME (default 00:00:07:00, Lightning's DD:HH:MM:SS) stops
# every run cleanly when the time is up; a stopped run resumes with --ckpt_path .../last.ckpt.
# OCTZOO_FIT_IN=SECONDS instead fits the schedule to a time budget: the three runs first train side by side for
# OCTZOO_PROBE_S (default 60) seconds to time their epochs (that probe is moved to runs/cifar10_gpu_probe/), then
# start again with max_epochs set to what the slowest of them can finish in the rest of the budget (at most the
# recipe's 180, or a --trainer.max_epochs among the extra arguments), so the learning rate still anneals to zero
# by the last epoch; the time limit then is the rest of the budget. PYTHON picks the interpreter (default
# python3); octzoo is imported from this checkout, so it needs no install. Runs land in runs/cifar10_gpu/ under the
# working directory (the repository root, to publish them).
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
    --trainer.max_time "${OCTZOO_MAX_TIME:-00:00:07:00}" --trainer.enable_progress_bar false "$@" >"$log" 2>&1
}
fit_all() {  # fit_all [ARGS...]: the three models side by side; fails if any of them failed
  local status=0 job
  fit resnet20 resnet20 "$@" &
  fit oct_resnet20_a0.25 oct_resnet20 --model.model_kwargs.alpha 0.25 "$@" &
  fit oct_resnet20_a0.5 oct_resnet20 --model.model_kwargs.alpha 0.5 "$@" &
  for job in $(jobs -p); do wait "$job" || status=1; done
  return $status
}
hms() { printf '00:%02d:%02d:%02d' $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }  # Lightning's max_time
start=$SECONDS
if [[ -n ${OCTZOO_FIT_IN:-} ]]; then
  [[ ! -e runs/cifar10_gpu ]] || { echo "runs/cifar10_gpu exists: move it aside before a timed run" >&2; exit 1; }
  probe=${OCTZOO_PROBE_S:-60} most=180  # recipe_gpu.yaml's length, unless the extra arguments set one
  for ((i = 1; i < $#; i++)); do [[ ${!i} == --trainer.max_epochs ]] && j=$((i + 1)) && most=${!j}; done
  fit_all "$@" --trainer.max_time "$(hms "$probe")" --trainer.max_epochs 1000000
  rm -rf runs/cifar10_gpu_probe && mv runs/cifar10_gpu runs/cifar10_gpu_probe
  # epochs per second of the slowest run, and the seconds each process spends outside its timed fit
  read -r epochs limit < <("$PYTHON" - "$OCTZOO_FIT_IN" "$((SECONDS - start))" "$most" <<'EOF'
import glob, json, math, sys
budget, spent, most = map(float, sys.argv[1:])
runs = [json.load(open(p)) for p in glob.glob("runs/cifar10_gpu_probe/*/version_*/summary.json")]
if len(runs) != 3 or min(r["epochs"] for r in runs) < 1:
    done = [r["epochs"] for r in runs]
    sys.exit(f"the {spent:.0f} s probe finished no epoch of some run ({done}): raise OCTZOO_PROBE_S")
rate = min(r["epochs"] / r["wall_time_s"] for r in runs)
outside = spent - max(r["wall_time_s"] for r in runs)
rest = budget - spent - outside
print(min(int(most), math.floor(0.95 * rest * rate)), max(1, int(rest)))
EOF
  )
  echo "probe: $((SECONDS - start)) s; $epochs epochs fit in the rest (time limit ${limit} s)"
  ((epochs >= 1)) || { echo "no epoch fits in OCTZOO_FIT_IN=$OCTZOO_FIT_IN s" >&2; exit 1; }
  set -- "$@" --trainer.max_epochs "$epochs" --trainer.max_time "$(hms "$limit")"
  start=$SECONDS
fi
status=0
fit_all "$@" || status=1
echo "trained in $((SECONDS - start)) s (exit status $status)"

runs=$(find runs/cifar10_gpu -mindepth 2 -maxdepth 2 -name 'version_*' | sort)
tar czf "$OUT/cifar10_gpu_runs.tar.gz" --ignore-failed-read \
  $(for r in $runs; do for f in summary.json metrics.csv config.yaml checkpoints/last.ckpt; do echo "$r/$f"; done; done)
for r in $runs; do
  "$PYTHON" -c "import json, sys; s = json.load(open(sys.argv[1] + '/summary.json')); f = s['metrics']['final']
print(f\"{s['model']} a{s['alpha']}: {s['status']}, {s['epochs']} epochs, val top-1 {f.get('val/acc1', float('nan')):.4f}, {s['wall_time_s']:.0f} s\")" "$r"
done
exit $status
