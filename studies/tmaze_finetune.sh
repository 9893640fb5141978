#!/usr/bin/env bash
# Online fine-tuning on the Passive T-Maze (docs/research/online.md, "Passive T-Maze:
# fine-tuning a memory task"): an Aaren agent trained offline with plain aaren-train (no
# curriculum, no decision weight) on the 20%-wrong-choice `medium` data at L = 300, scored
# at L = 300, then fine-tuned online with aaren-finetune --decision-weight in the L = 300
# maze (categorical head, recurrent acting) and scored again at L = 300 and 1000.
#
#   studies/tmaze_finetune.sh [SEED ...]         (default: 0 1 2)
#
# Resumable: finished pieces are skipped. Files: runs/tmaze-finetune/, and one aaren-eval JSON
# per seed and stage plus summary.md in docs/results/online/tmaze-u0.5/ (OUT; the other budgets
# and the run without the weight in their own folders beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORK=${WORK:-runs/tmaze-finetune}
UPDATES=${UPDATES:-0.5}               # gradient steps per collected env step
DECISION_WEIGHT=${DECISION_WEIGHT:-1} # 0: fine-tune without --decision-weight
OUT=${OUT:-docs/results/online/tmaze-u$UPDATES$([ "$DECISION_WEIGHT" = 1 ] || echo -no-decision-weight)}
OFFLINE_STEPS=${OFFLINE_STEPS:-400}   # the plain run that stayed far from 100% (docs/memory.md)
ENV_STEPS=${ENV_STEPS:-12000}         # online budget: 40 episodes of 301 steps
EPISODES=${EPISODES:-100}             # evaluation episodes per stage
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2)
mkdir -p "$WORK/data" "$OUT"

data="$WORK/data/PassiveTMaze-L300-medium.hdf5"
[ -f "$data" ] || "$BIN/aaren-collect" --env tmaze-300 --levels medium --transitions $((48 * 301)) \
    --no-minari --hdf5-dir "$WORK/data" --work-dir "$WORK/collect"

score() { # checkpoint env json
    [ -f "$3" ] || "$BIN/aaren-eval" --checkpoint "$1" --env "$2" --episodes "$EPISODES" \
        --num-envs 10 --threads 1 --no-progress --json "$3"
}

for s in "${SEEDS[@]}"; do
    off="$WORK/offline-s$s"
    if [ ! -f "$off/checkpoint/agent.json" ] || ! grep -q "\"step\": $OFFLINE_STEPS\b" "$off/checkpoint/agent.json"; then
        resume=()
        [ -f "$off/checkpoint/trainer.json" ] && resume=(--resume)
        "$BIN/aaren-train" --dataset "d4rl:$data" --steps "$OFFLINE_STEPS" --recipe episode \
            --episode-length 301 --batch-size 4 --padding right --return-scale 1 \
            --max-timestep 1 --model.dim 64 --model.num-layers 2 --model.dropout 0 \
            --learning-rate 1e-3 --warmup-steps 50 --grad-clip 1 --target-return 1 \
            --env tmaze-300 --eval-episodes 0 --threads 1 --no-progress \
            --run-dir "$off" --seed "$s" "${resume[@]}"
    fi
    score "$off/checkpoint" tmaze-300 "$OUT/offline-s$s-L300.json"
    dw=(--decision-weight)
    [ "$DECISION_WEIGHT" = 1 ] || dw=()
    ft="$WORK/online-u$UPDATES-dw$DECISION_WEIGHT-s$s"
    if [ ! -f "$OUT/finetune-s$s.json" ]; then
        resume=()
        [ -f "$ft/checkpoint/trainer.json" ] && resume=(--resume)
        "$BIN/aaren-finetune" --checkpoint "$off/checkpoint" --env tmaze-300 \
            --env-steps "$ENV_STEPS" --num-envs 8 --updates-per-env-step "$UPDATES" \
            --exploration-return 1 --learning-rate 1e-3 --episode-length 301 "${dw[@]}" \
            --eval-every 3000 --eval-episodes 20 --checkpoint-every 3000 --threads 1 \
            --no-progress --seed "$s" --run-dir "$ft" "${resume[@]}"
        cp "$ft/summary.json" "$OUT/finetune-s$s.json"
    fi
    score "$ft/checkpoint" tmaze-300 "$OUT/online-s$s-L300.json"
    score "$ft/checkpoint" tmaze-1000 "$OUT/online-s$s-L1000.json"
done

"$BIN/python" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
def rate(name):
    p = out / name
    return f"{100 * json.loads(p.read_text())['results'][0]['success_rate']:.0f}%" if p.is_file() else "not run"
rows = ["| seed | offline, L = 300 | fine-tuned, L = 300 | fine-tuned, L = 1000 | env steps |",
        "|---|---|---|---|---|"]
for f in sorted(out.glob("offline-s*-L300.json")):
    s = f.name.split("-")[1]
    ft = out / f"finetune-{s}.json"
    steps = json.loads(ft.read_text())["env_steps"] if ft.is_file() else "-"
    rows.append(f"| {s[1:]} | {rate(f.name)} | {rate(f'online-{s}-L300.json')} | "
                f"{rate(f'online-{s}-L1000.json')} | {steps} |")
(out / "summary.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
EOF
