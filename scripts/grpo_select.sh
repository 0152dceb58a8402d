#!/usr/bin/env bash
# Choosing config/grpo_toy.py's settings without looking at the evaluation prompts. From a finished demo run (its
# SFT and reward checkpoints), GRPO with the reward model at each candidate setting for three training seeds; every
# run, and its periodic gold evaluation, sees only the tuning prompts (data/toy/prepare.py's tune_prompts.jsonl:
# 60 training cells per kind, disjoint from eval_prompts.jsonl); evaluate.py with the gold judge on the tuning
# prompts for each seed (the demo's SFT and PPO beside them), then evaluate.py --aggregate -> OUT/table.md.
# The candidates and the rule were fixed before the first run (README, "Choosing GRPO's settings"):
#   grpo            config/grpo_toy.py as it is: k3 in the loss, beta 0.1
#   grpo_kl_loss    beta 0.3 (PPO's coefficient), k3 in the loss
#   grpo_kl_reward  beta 0.3 as PPO applies it: a per-token penalty in the reward (--kl_in=reward)
#   dr_grpo         Dr. GRPO's advantages r - mean (no division by the group's std), beta 0.1 in the loss
# and the setting with the highest mean gold score over the seeds becomes config/grpo_toy.py's.
# Usage: bash scripts/grpo_select.sh DEMO_DIR [OUT_DIR]   (default OUT_DIR: DEMO_DIR/grpo_select; never overwrites)
# About 20 minutes on 2 cores; SEEDS="1337 1338 1339" by default.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEMO=${1:?usage: bash scripts/grpo_select.sh DEMO_DIR [OUT_DIR]}
OUT=${2:-$DEMO/grpo_select}
source scripts/from_demo.sh
read_seeds  # before from_demo: a bad SEEDS leaves OUT_DIR uncreated
from_demo data sft reward ppo
TUNE="$DATA/tune_prompts.jsonl"
[ -e "$TUNE" ] || { echo "error: $TUNE not found: a demo from before tune_prompts.jsonl; run python -m data.toy.prepare --out_dir=$DATA" >&2; exit 2; }
candidates=("grpo" "grpo_kl_loss --kl_coef=0.3" "grpo_kl_reward --kl_in=reward --kl_coef=0.3" "dr_grpo --advantage=dr_grpo")

aggregate=()
for seed in "${seeds[@]}"; do
  S="$OUT/seed_$seed"
  models="sft:$DEMO/sft,ppo:$DEMO/ppo"
  for candidate in "${candidates[@]}"; do
    read -r -a flags <<< "$candidate"
    name=${flags[0]}
    stage "seed $seed, $candidate"
    "$PY" grpo.py --config config/grpo_toy.py --out_dir="$S/$name" --sft_dir="$DEMO/sft" --reward_dir="$DEMO/reward" \
      --prompts="$DATA/rl_prompts.jsonl" --eval_prompts="$TUNE" --seed="$seed" "${flags[@]:1}"
    models+=",$name:$S/$name"
  done
  stage "seed $seed: evaluation on the tuning prompts"
  "$PY" evaluate.py --checkpoints="$models" --reference="$DEMO/sft" --reward_dir="$DEMO/reward" \
    --eval_prompts="$TUNE" --demos="$DATA/sft_val.jsonl" --seed="$seed" --samples_md=0 --out_dir="$S/eval"
  aggregate+=("seed_$seed:$S/eval")
done
stage "aggregate over ${#seeds[@]} seeds"
"$PY" evaluate.py --aggregate="$(IFS=,; echo "${aggregate[*]}")" --out_dir="$OUT"
stage "done: $OUT/table.md (each seed's own in $OUT/seed_*/eval)"
