#!/usr/bin/env bash
# The toy world's two experiments, from a finished demo run (its SFT and reward checkpoints):
#  - the reward-KL frontier (the DPO paper's figure 2): PPO and DPO each at several beta, gold score
#    against KL to the SFT reference -> frontier.png;
#  - over-optimisation (Gao et al. 2022): the demo's PPO runs with and without the KL penalty, and DPO
#    (plain, no early stop) trained past its best -> overoptimization.png.
# Usage: bash scripts/experiments.sh DEMO_DIR [OUT_DIR]   (default OUT_DIR: DEMO_DIR/experiments; never overwrites)
# PPO_BETAS and DPO_BETAS (space-separated) set the extra betas. About 20 minutes on two CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEMO=${1:?usage: bash scripts/experiments.sh DEMO_DIR [OUT_DIR]}
OUT=${2:-$DEMO/experiments}
source scripts/from_demo.sh
from_demo data sft reward ppo ppo_beta0 dpo
# the demo's runs: PPO at the toy config's beta and at 0, DPO at its config's beta
ppo_beta=$("$PY" -c "import runpy; print(runpy.run_path('config/ppo_toy.py')['kl_coef'])")
dpo_beta=$("$PY" -c "import runpy; print(runpy.run_path('config/dpo_toy.py')['beta'])")
checkpoints="sft:$DEMO/sft,ppo_beta$ppo_beta:$DEMO/ppo,ppo_beta0:$DEMO/ppo_beta0,dpo_beta$dpo_beta:$DEMO/dpo"
runs="ppo_beta$ppo_beta:$DEMO/ppo,ppo_beta0:$DEMO/ppo_beta0"
for beta in ${PPO_BETAS:-0.03 0.1 1.0}; do
  stage "PPO, beta = $beta"
  "$PY" ppo.py --config config/ppo_toy.py --out_dir="$OUT/ppo_beta$beta" --sft_dir="$DEMO/sft" --reward_dir="$DEMO/reward" \
    --prompts="$DATA/rl_prompts.jsonl" --eval_prompts="$DATA/eval_prompts.jsonl" --kl_coef="$beta"
  checkpoints+=",ppo_beta$beta:$OUT/ppo_beta$beta"
done
prefs=(--train_data="$DATA/prefs_train.jsonl" --val_data="$DATA/prefs_val.jsonl" --eval_prompts="$DATA/eval_prompts.jsonl")
for beta in ${DPO_BETAS:-0.03 0.1 1.0}; do
  stage "DPO, beta = $beta"
  "$PY" dpo.py --config config/dpo_toy.py --out_dir="$OUT/dpo_beta$beta" --init_from="$DEMO/sft" "${prefs[@]}" --beta="$beta"
  checkpoints+=",dpo_beta$beta:$OUT/dpo_beta$beta"
done
stage "DPO trained past its best: plain DPO (no label smoothing, no NLL term), no early stop"
"$PY" dpo.py --config config/dpo_toy.py --out_dir="$OUT/dpo_long" --init_from="$DEMO/sft" "${prefs[@]}" \
  --label_smoothing=0 --rpo_alpha=0 --max_chosen_drop=0 --max_iters=150
runs+=",dpo_long:$OUT/dpo_long"
stage "evaluation"
"$PY" evaluate.py --checkpoints="$checkpoints" --runs="$runs" --reference="$DEMO/sft" --reward_dir="$DEMO/reward" \
  --eval_prompts="$DATA/eval_prompts.jsonl" --demos="$DATA/sft_val.jsonl" --out_dir="$OUT"
stage "done: $OUT/frontier.png, $OUT/overoptimization.png, $OUT/table.md"
