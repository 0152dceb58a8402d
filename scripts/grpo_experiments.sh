#!/usr/bin/env bash
# The critic-free family on the toy world, from a finished demo run (its SFT and reward checkpoints, and its
# GRPO run at config/grpo_toy.py's settings):
#  - verifiable rewards: GRPO on the math prompts with the sums' rule as the only reward (two models, no
#    reward model), against the demo's PPO with the learned reward model -> math_correct in table.md; at the
#    demo's 60 iterations, and at 120 (the rule's acceptance rate on the training prompts still climbs at 60);
#    and with groups of 8 (P = 16, minibatches of 32: the same 4 gradient steps per iteration): near the
#    ceiling most groups of 4 are all right, equal rewards, no signal (grpo/equal_reward_groups);
#  - the rule on the sums with every kind sampled (--unverified=zero: reward 0 where the rule cannot check, so only
#    PPO's KL penalty acts there), 64 prompts x 4 (16 of them sums, as the runs above), at 60 and 120 iterations:
#    do the kinds it does not train stay where SFT left them? -> OUT/verifier16/table.md, every verifier run and
#    SFT at 16 samples per prompt (a rate's standard error ~0.015, against ~0.03 at the table's 4);
#  - the rule and the reward model together (`model+verifier`): the rule on the math prompts, the model elsewhere;
#  - groups of 8 on 8 prompts (the same 64 responses per iteration) against the demo's 4 on 16;
#  - the KL regulariser: config/grpo_toy.py applies it as PPO does (beta 0.3, a penalty in the reward); here as
#    GRPO's k3 in the loss instead, at the same beta and at 0.1 (this config's setting before scripts/grpo_select.sh);
#  - advantage estimators on the same budget (config/grpo_toy.py's prompts, groups, iterations, learning rate):
#    GRPO (the demo's run), Dr. GRPO, RLOO, each with GRPO's per-response loss aggregation;
#  - loss aggregation with GRPO's advantages: per response (the demo's run), per token (DAPO), over a
#    constant (Dr. GRPO) -> training_curves.png: the response length of every run as training goes on.
# Usage: bash scripts/grpo_experiments.sh DEMO_DIR [OUT_DIR]   (default OUT_DIR: DEMO_DIR/grpo_experiments; never overwrites)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEMO=${1:?usage: bash scripts/grpo_experiments.sh DEMO_DIR [OUT_DIR]}
OUT=${2:-$DEMO/grpo_experiments}
source scripts/from_demo.sh
from_demo data sft reward ppo grpo
grpo() {  # grpo NAME FLAGS...: a run of config/grpo_toy.py from the demo's checkpoints into OUT/NAME
  local name=$1; shift
  stage "GRPO: $name ($*)"
  "$PY" grpo.py --config config/grpo_toy.py --out_dir="$OUT/$name" --sft_dir="$DEMO/sft" --reward_dir="$DEMO/reward" \
    --prompts="$DATA/rl_prompts.jsonl" --eval_prompts="$DATA/eval_prompts.jsonl" "$@"
}
grpo grpo_math --reward=verifier --prompt_kinds=math
grpo grpo_math_120 --reward=verifier --prompt_kinds=math --max_iters=120
grpo grpo_math_g8 --reward=verifier --prompt_kinds=math --group_size=8 --minibatch_size=32
grpo grpo_math_anchor --reward=verifier --unverified=zero --prompts_per_iter=64 --minibatch_size=64
grpo grpo_math_anchor_120 --reward=verifier --unverified=zero --prompts_per_iter=64 --minibatch_size=64 --max_iters=120
grpo grpo_model_verifier --reward=model+verifier
grpo grpo_g8 --group_size=8 --prompts_per_iter=8
grpo grpo_kl_loss --kl_in=loss --kl_coef=0.3
grpo grpo_kl_loss_0.1 --kl_in=loss --kl_coef=0.1
grpo dr_grpo --advantage=dr_grpo
grpo rloo --advantage=rloo
grpo grpo_dapo_agg --loss_agg=dapo
grpo grpo_dr_agg --loss_agg=dr_grpo
stage "evaluation"
"$PY" evaluate.py --checkpoints="sft:$DEMO/sft,ppo:$DEMO/ppo,grpo:$DEMO/grpo,grpo_math:$OUT/grpo_math,grpo_math_120:$OUT/grpo_math_120,grpo_math_g8:$OUT/grpo_math_g8,grpo_math_anchor:$OUT/grpo_math_anchor,grpo_math_anchor_120:$OUT/grpo_math_anchor_120,grpo_model_verifier:$OUT/grpo_model_verifier,grpo_g8:$OUT/grpo_g8,grpo_kl_loss:$OUT/grpo_kl_loss,grpo_kl_loss_0.1:$OUT/grpo_kl_loss_0.1,dr_grpo:$OUT/dr_grpo,rloo:$OUT/rloo,grpo_dapo_agg:$OUT/grpo_dapo_agg,grpo_dr_agg:$OUT/grpo_dr_agg" \
  --runs="grpo:$DEMO/grpo,dr_grpo:$OUT/dr_grpo,rloo:$OUT/rloo,grpo_dapo_agg:$OUT/grpo_dapo_agg,grpo_dr_agg:$OUT/grpo_dr_agg" \
  --curves="response/length,env/reward_mean,objective/kl" --reference="$DEMO/sft" --reward_dir="$DEMO/reward" \
  --eval_prompts="$DATA/eval_prompts.jsonl" --demos="$DATA/sft_val.jsonl" --out_dir="$OUT"
stage "evaluation of the verifier runs at 16 samples per prompt"
verifier_runs="sft:$DEMO/sft"
for run in grpo_math grpo_math_120 grpo_math_g8 grpo_math_anchor grpo_math_anchor_120; do verifier_runs+=",$run:$OUT/$run"; done
"$PY" evaluate.py --checkpoints="$verifier_runs" --reference="$DEMO/sft" --reward_dir="$DEMO/reward" \
  --eval_prompts="$DATA/eval_prompts.jsonl" --demos="$DATA/sft_val.jsonl" --samples_per_prompt=16 --samples_md=0 \
  --out_dir="$OUT/verifier16"
stage "done: $OUT/verifier16/table.md, $OUT/table.md, $OUT/training_curves.png, $OUT/frontier.png, $OUT/overoptimization.png"
