#!/usr/bin/env bash
# The end-to-end toy demo on CPU: install what is missing, generate the toy world, then SFT -> reward
# model -> PPO (and PPO with beta = 0, the reward-hacking experiment) -> GRPO -> DPO -> the evaluation table.
# Usage: bash scripts/demo.sh [OUT_DIR]      (default: out/demo-<date>-<time>; never overwrites a run)
# QUICK=1 runs every stage for a few steps only (a wiring check, used by the tests; numbers meaningless).
# STAGE_FLAGS (e.g. "--device=cuda --compile=True") are added to every training stage, EVAL_FLAGS to evaluate.py
# (scripts/gpu_check.sh runs the QUICK demo on a GPU this way).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -n "${SKIP_INSTALL:-}" ] || bash scripts/install.sh
source scripts/quick_flags.sh
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
"$PY" sft.py --config config/sft_toy.py --out_dir="$OUT/sft" "${toy_data[@]}" --tokenizer="$DATA/vocab.json" ${q_sft[@]+"${q_sft[@]}"}
stage "reward model"
"$PY" reward.py --config config/reward_toy.py --out_dir="$OUT/reward" --init_from="$OUT/sft" "${prefs[@]}" \
  --rl_prompts="$DATA/rl_prompts.jsonl" ${q_rm[@]+"${q_rm[@]}"}
stage "PPO"
"$PY" ppo.py --config config/ppo_toy.py --out_dir="$OUT/ppo" --sft_dir="$OUT/sft" --reward_dir="$OUT/reward" \
  --prompts="$DATA/rl_prompts.jsonl" --eval_prompts="$DATA/eval_prompts.jsonl" ${q_ppo[@]+"${q_ppo[@]}"}
stage "PPO without the KL penalty (beta = 0): reward hacking"
"$PY" ppo.py --config config/ppo_toy.py --out_dir="$OUT/ppo_beta0" --sft_dir="$OUT/sft" --reward_dir="$OUT/reward" \
  --prompts="$DATA/rl_prompts.jsonl" --eval_prompts="$DATA/eval_prompts.jsonl" --kl_coef=0 --max_iters=30 \
  ${q_ppo[@]+"${q_ppo[@]}"}
stage "GRPO (no value model: advantages within groups of responses to the same prompt)"
"$PY" grpo.py --config config/grpo_toy.py --out_dir="$OUT/grpo" --sft_dir="$OUT/sft" --reward_dir="$OUT/reward" \
  --prompts="$DATA/rl_prompts.jsonl" --eval_prompts="$DATA/eval_prompts.jsonl" ${q_grpo[@]+"${q_grpo[@]}"}
stage "DPO"
"$PY" dpo.py --config config/dpo_toy.py --out_dir="$OUT/dpo" --init_from="$OUT/sft" "${prefs[@]}" \
  --eval_prompts="$DATA/eval_prompts.jsonl" ${q_dpo[@]+"${q_dpo[@]}"}
stage "evaluation"
"$PY" evaluate.py --checkpoints="sft:$OUT/sft,ppo:$OUT/ppo,ppo_beta0:$OUT/ppo_beta0,grpo:$OUT/grpo,dpo:$OUT/dpo" \
  --reference="$OUT/sft" --reward_dir="$OUT/reward" --eval_prompts="$DATA/eval_prompts.jsonl" \
  --demos="$DATA/sft_val.jsonl" --jailbreak_prompts="$DATA/jailbreak_prompts.jsonl" --runs="ppo:$OUT/ppo,ppo_beta0:$OUT/ppo_beta0,grpo:$OUT/grpo,dpo:$OUT/dpo" --out_dir="$OUT" \
  ${q_eval[@]+"${q_eval[@]}"}
stage "done: $OUT (table.md, results.json, metrics.png, frontier.png, overoptimization.png, samples.md, each stage's curves)"
