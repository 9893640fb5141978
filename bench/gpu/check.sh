#!/usr/bin/env bash
# The GPU check in one call (<= 8 minutes on one CUDA GPU): the training step of both
# backbones (fp32 and bf16, K = 20 x batch 64 and K = 1000 x batch 4) and d3rlpy's DT step where
# d3rlpy imports, then a short real training run on the shipped Hopper data with evaluation in
# MuJoCo; every result as JSON under OUT (default runs/gpu-check), one summary.json at the end.
#
#   bash bench/gpu/fetch_wheels.sh                     # here, with network: .whl/ (git-ignored)
#   OUT=/some/dir bash bench/gpu/check.sh              # there, on the GPU box (no network needed)
#   DEVICE=cpu STEPS=20 bash bench/gpu/check.sh        # a dry run of the same script on a CPU
#
# What the box needs: Python with torch (CUDA), numpy, h5py, matplotlib, safetensors, tqdm; the
# rest comes from .whl/ (bench/gpu/install.sh). Each part has its own time limit, so one that
# hangs cannot take the others with it; a part that fails is recorded as failed in summary.json.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/gpu-check}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-2000}          # the short training run's gradient steps
PY=${PY:-python3}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 WANDB_MODE=offline MUJOCO_GL=egl PYTHONUNBUFFERED=1

if ! "$PY" -c "import aaren_rl.bench.cli, gymnasium, mujoco, tyro" 2>/dev/null; then
  eval "$(PY=$PY bash bench/gpu/install.sh)"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/device.txt"

status=()
part() {  # part NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  if timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then status+=("\"$name\": \"ok\"")
  else status+=("\"$name\": \"failed ($?)\""); tail -5 "$OUT/$name.log"; fi
}

# 1. the training step, both backbones, fp32 and bf16 (d3rlpy's where its venv or module exists)
peer=()
if [ -x .venv-d3rlpy/bin/python ]; then peer=(--peer-python .venv-d3rlpy/bin/python)
elif "$PY" -c "import d3rlpy" 2>/dev/null; then peer=(--peer-python "$(command -v "$PY")")
else peer=(--no-peer); echo "d3rlpy not installed here: its step is not timed"; fi
part train-step 240 "$PY" -m aaren_rl.bench.cli train --device "$DEVICE" \
  --context-lengths 20 1000 --batch-sizes 64 4 --precision fp32 bf16 --compile \
  --steps 10 --warmup 3 "${peer[@]}" --out "$OUT/train-step"

# 2. a short real run: train on the shipped Hopper data, evaluate in MuJoCo, both backbones
for backbone in aaren transformer; do
  part "train-$backbone" 150 "$PY" -m aaren_rl.train.cli --dataset demo:hopper \
    --backbone "$backbone" --device "$DEVICE" --steps "$STEPS" --eval-episodes 5 \
    --eval-num-envs 5 --checkpoint-every 1000 --no-progress --run-dir "$OUT/run-$backbone"
  part "eval-$backbone" 60 "$PY" -m aaren_rl.eval.cli --checkpoint "$OUT/run-$backbone/checkpoint" \
    --episodes 5 --num-envs 5 --json "$OUT/eval-$backbone.json"
done

(IFS=,; echo "{${status[*]}}") > "$OUT/summary.json"
cat "$OUT/summary.json"
