#!/usr/bin/env bash
# The end-to-end toy demo on CPU: install what is missing, generate the toy world, then SFT -> reward
# model -> PPO (and PPO with beta = 0, the reward-hacking experiment) -> DPO -> the evaluation table.
# Usage: bash scripts/demo.sh [OUT_DIR]      (default: out/demo-<date>-<time>; never overwrites a run)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/install.sh
OUT=${1:-out/demo-$(date +%Y%m%d-%H%M%S)}
if [ -e "$OUT" ]; then echo "error: $OUT already exists; pass another directory" >&2; exit 2; fi
mkdir -p "$OUT"
DATA="$OUT/data"
t0=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }

stage "toy world -> $DATA"
"$PY" -m data.toy.prepare --out_dir "$DATA"
toy_data=(--train_data="$DATA/sft_train.jsonl" --val_data="$DATA/sft_val.jsonl")
prefs=(--train_data="$DATA/prefs_train.jsonl" --val_data="$DATA/prefs_val.jsonl")

stage "SFT"
"$PY" sft.py --config config/sft_toy.py --out_dir="$OUT/sft" "${toy_data[@]}" --tokenizer="$DATA/vocab.json"
stage "reward model"
"$PY" reward.py --config config/reward_toy.py --out_dir="$OUT/reward" --init_from="$OUT/sft" "${prefs[@]}" \
  --rl_prompts="$DATA/rl_prompts.jsonl"
stage "PPO"
"$PY" ppo.py --config config/ppo_toy.py --out_dir="$OUT/ppo" --sft_dir="$OUT/sft" --reward_dir="$OUT/reward" \
  --prompts="$DATA/rl_prompts.jsonl" --eval_prompts="$DATA/eval_prompts.jsonl"
stage "PPO without the KL penalty (beta = 0): reward hacking"
"$PY" ppo.py --config config/ppo_toy.py --out_dir="$OUT/ppo_beta0" --sft_dir="$OUT/sft" --reward_dir="$OUT/reward" \
  --prompts="$DATA/rl_prompts.jsonl" --eval_prompts="$DATA/eval_prompts.jsonl" --kl_coef=0
stage "DPO"
"$PY" dpo.py --config config/dpo_toy.py --out_dir="$OUT/dpo" --init_from="$OUT/sft" "${prefs[@]}" \
  --eval_prompts="$DATA/eval_prompts.jsonl"
stage "evaluation"
"$PY" evaluate.py --checkpoints="sft:$OUT/sft,ppo:$OUT/ppo,ppo_beta0:$OUT/ppo_beta0,dpo:$OUT/dpo" \
  --reference="$OUT/sft" --reward_dir="$OUT/reward" --eval_prompts="$DATA/eval_prompts.jsonl" \
  --demos="$DATA/sft_val.jsonl" --out_dir="$OUT"
stage "done: $OUT (table.md, results.json, each stage's curves)"
