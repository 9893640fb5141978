#!/usr/bin/env bash
# The Passive T-Maze through the main commands alone (aaren-collect + aaren-train + aaren-eval),
# the recipe of docs/memory.md ("aaren-train has the benchmark's two training aids"): train
# on lengths L <= 300 with the length curriculum, decision-step weighting and score jitter,
# then score 100 episodes at L = 1000, 1500 and 3000 per seed. Resumable: finished pieces
# are skipped.
#
#   studies/tmaze_main_cli.sh [SEED ...]          (default: 0 1 2; `make results-tmaze`)
#   JITTER=0 studies/tmaze_main_cli.sh ...        (without score jitter: the earlier recipe)
#
# Files: runs/tmaze-main-cli/ (data, runs), docs/results/memory/main-cli-jitter$JITTER/ (eval
# JSON per seed and length, summary.md). The CPU is recorded in every aaren-eval JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORK=${WORK:-runs/tmaze-main-cli}
JITTER=${JITTER:-0.5}      # aaren-train --model.score-jitter (docs/memory.md, "Score jitter")
OUT=${OUT:-docs/results/memory/main-cli-jitter$JITTER}
STEPS=${STEPS:-1600}       # training steps (the recipe's; smaller only in tests)
EPISODES=${EPISODES:-100}  # evaluation episodes per length
LENGTHS=(1000 1500 3000)   # evaluation lengths (the target's two, and twice the longer)
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2)
mkdir -p "$WORK/data" "$OUT"

datasets=()
for L in 10 30 100 300; do # 48 medium-mix episodes per length, as aaren-bench memory
    f="$WORK/data/PassiveTMaze-L$L-medium.hdf5"
    if [ ! -f "$f" ]; then
        "$BIN/aaren-collect" --env "tmaze-$L" --levels medium --transitions $((48 * (L + 1))) --no-minari \
            --hdf5-dir "$WORK/data" --work-dir "$WORK/collect"
    fi
    datasets+=("d4rl:$f")
done
spec=$(IFS=+; echo "${datasets[*]}")

for s in "${SEEDS[@]}"; do
    run="$WORK/runs/tmaze-jitter$JITTER-s$s"
    if [ ! -f "$run/checkpoint/agent.json" ] || ! grep -q "\"step\": $STEPS\b" "$run/checkpoint/agent.json"; then
        resume=()
        [ -f "$run/checkpoint/trainer.json" ] && resume=(--resume)
        "$BIN/aaren-train" --dataset "$spec" \
            --curriculum 11 31 101 301 --decision-weight --steps "$STEPS" --recipe episode \
            --episode-length 301 --batch-size 4 --padding right --return-scale 1 \
            --max-timestep 1 --model.dim 64 --model.num-layers 2 --model.dropout 0 \
            --learning-rate 1e-3 --warmup-steps 50 --grad-clip 1 --target-return 1 \
            --env tmaze-1000 --eval-episodes 0 --threads 1 --no-progress \
            --model.score-jitter "$JITTER" \
            --run-dir "$run" --seed "$s" "${resume[@]}"
    fi
    for L in "${LENGTHS[@]}"; do
        json="$OUT/tmaze-s$s-L$L.json"
        [ -f "$json" ] || "$BIN/aaren-eval" --checkpoint "$run/checkpoint" --env "tmaze-$L" \
            --episodes "$EPISODES" --num-envs 10 --threads 1 --no-progress --json "$json"
    done
done

"$BIN/python" - "$OUT" "${LENGTHS[@]}" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
lengths = [int(L) for L in sys.argv[2:]]  # the script's LENGTHS
rows = ["| seed | " + " | ".join(f"L = {L} success" for L in lengths) + " |"]
rows.append("|---" * (len(lengths) + 1) + "|")
for seed_file in sorted(out.glob(f"tmaze-s*-L{lengths[0]}.json")):
    seed = seed_file.name.split("-")[1]
    cells = []
    for L in lengths:
        path = out / f"tmaze-{seed}-L{L}.json"
        if not path.is_file():
            cells.append("not run")
            continue
        r = json.loads(path.read_text())["results"][0]
        cells.append(f"{100 * r['success_rate']:.0f}% ({r['episodes']} episodes)")
    rows.append(f"| {seed[1:]} | " + " | ".join(cells) + " |")
(out / "summary.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
EOF
