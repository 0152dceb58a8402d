#!/usr/bin/env bash
# Choosing the budget of the anchored verifier run without looking at the evaluation prompts (README, "Verifiable
# rewards and the kinds they do not train"). From a finished demo run (its SFT checkpoint; its reward model only for
# evaluate.py's rm_score): GRPO with the sums' rule, every kind sampled (--unverified=zero: reward 0 where the rule cannot check, so only PPO's KL acts there),
# for three training seeds, 120 iterations each; the run itself evaluates on the tuning prompts (data/toy/prepare.py's
# tune_prompts.jsonl, disjoint from eval_prompts.jsonl) every 30 iterations, 8 samples per prompt. Two candidates,
# the same 256 rollouts and 4 gradient steps per iteration:
#   anchor      64 prompts x 4   (grpo_experiments.sh's grpo_math_anchor)
#   anchor_g8   32 prompts x 8   (larger groups: fewer all-right groups, which carry no signal, near the ceiling)
# The rule, fixed before the first run (scripts/grpo_verifier_select.py): among the (candidate, iteration) whose
# every other kind's rate (harmful_refusal, over_refusal, topic_correct, unanswerable_idk) moved by less than 0.05
# from iteration 0, mean over seeds, the highest mean math_correct; ties go to fewer iterations.
# Then the choice is measured once on the evaluation prompts: the same run for seed 1337, stopped at the chosen
# iteration (the same trajectory: nothing before it depends on max_iters), and evaluate.py at 16 samples per prompt
# beside SFT -> OUT/final/eval/table.md.
# Usage: bash scripts/grpo_verifier_select.sh DEMO_DIR [OUT_DIR]   (default OUT_DIR: DEMO_DIR/grpo_verifier_select;
# never overwrites). About 40 minutes on 2 cores; SEEDS="1337 1338 1339" by default.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEMO=${1:?usage: bash scripts/grpo_verifier_select.sh DEMO_DIR [OUT_DIR]}
OUT=${2:-$DEMO/grpo_verifier_select}
source scripts/from_demo.sh
read_seeds  # before from_demo: a bad SEEDS leaves OUT_DIR uncreated
from_demo data sft reward
TUNE="$DATA/tune_prompts.jsonl"
[ -e "$TUNE" ] || { echo "error: $TUNE not found: a demo from before tune_prompts.jsonl; run python -m data.toy.prepare --out_dir=$DATA" >&2; exit 2; }
declare -A flags_of=([anchor]="--prompts_per_iter=64 --group_size=4" [anchor_g8]="--prompts_per_iter=32 --group_size=8")
candidates=(anchor anchor_g8)

grpo() {  # grpo SEED NAME OUT_DIR ITERATIONS: the anchored verifier run, evaluated on the tuning prompts
  local seed=$1 name=$2 dir=$3 iters=$4
  read -r -a flags <<< "${flags_of[$name]}"
  "$PY" grpo.py --config config/grpo_toy.py --reward=verifier --unverified=zero --minibatch_size=64 "${flags[@]}" \
    --max_iters="$iters" --eval_interval=30 --eval_samples_per_prompt=8 --sample_interval=30 --sft_dir="$DEMO/sft" \
    --prompts="$DATA/rl_prompts.jsonl" --eval_prompts="$TUNE" --seed="$seed" --out_dir="$dir"
}

for seed in "${seeds[@]}"; do
  for name in "${candidates[@]}"; do
    stage "seed $seed, $name (${flags_of[$name]})"
    grpo "$seed" "$name" "$OUT/seed_$seed/$name" 120
  done
done
stage "the rule over ${#seeds[@]} seeds"
"$PY" scripts/grpo_verifier_select.py "$OUT" || { echo "nothing to measure on the evaluation prompts" >&2; exit 1; }
read -r name iters < "$OUT/choice.txt"
stage "the choice, $name at $iters iterations, seed 1337, measured once on the evaluation prompts"
grpo 1337 "$name" "$OUT/final/$name" "$iters"
"$PY" evaluate.py --checkpoints="sft:$DEMO/sft,$name:$OUT/final/$name" --reference="$DEMO/sft" --reward_dir="$DEMO/reward" \
  --eval_prompts="$DATA/eval_prompts.jsonl" --demos="$DATA/sft_val.jsonl" --samples_per_prompt=16 --samples_md=0 \
  --out_dir="$OUT/final/eval"
stage "done: $OUT/table.md (the choice), $OUT/final/eval/table.md (its measurement)"
