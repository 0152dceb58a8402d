#!/usr/bin/env bash
# The direct-preference family side by side on the toy world, from a finished demo run (its SFT checkpoint
# and preference data): every method from the same SFT checkpoint on the same 8000 training pairs, with
# dpo_toy.py's batch, steps and learning rate, then evaluate.py -> table.md (the "direct methods" table),
# frontier.png (each method's point: gold score against KL to SFT) and overoptimization.png.
#   dpo    DPO (sigmoid loss), with RPO's NLL term as in dpo_toy.py     cdpo   conservative DPO: the demo's run
#   ipo    IPO, with the NLL term                                      kto    KTO on the pairs split in two, unpaired
#   simpo  SimPO (reference-free)                                      orpo   ORPO (reference-free)
# Usage: bash scripts/direct_experiments.sh DEMO_DIR [OUT_DIR]   (default OUT_DIR: DEMO_DIR/direct_experiments; never overwrites)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEMO=${1:?usage: bash scripts/direct_experiments.sh DEMO_DIR [OUT_DIR]}
OUT=${2:-$DEMO/direct_experiments}
source scripts/from_demo.sh
from_demo data sft reward dpo
data=(--init_from="$DEMO/sft" --train_data="$DATA/prefs_train.jsonl" --val_data="$DATA/prefs_val.jsonl"
      --eval_prompts="$DATA/eval_prompts.jsonl")
run() {  # run NAME SCRIPT CONFIG FLAGS...: a toy run from the demo's SFT checkpoint into OUT/NAME
  local name=$1 script=$2 config=$3; shift 3
  stage "$name: $script --config $config $*"
  "$PY" "$script" --config "$config" --out_dir="$OUT/$name" "${data[@]}" "$@"
}
run dpo dpo.py config/dpo_toy.py --label_smoothing=0
run ipo dpo.py config/dpo_toy.py --loss_type=ipo --label_smoothing=0
run kto kto.py config/kto_toy.py
run simpo dpo.py config/dpo_simpo_toy.py
run orpo dpo.py config/dpo_orpo_toy.py
names="dpo:$OUT/dpo,cdpo:$DEMO/dpo,ipo:$OUT/ipo,kto:$OUT/kto,simpo:$OUT/simpo,orpo:$OUT/orpo"
stage "evaluation"
"$PY" evaluate.py --checkpoints="sft:$DEMO/sft,$names" --runs="$names" --reference="$DEMO/sft" --reward_dir="$DEMO/reward" \
  --eval_prompts="$DATA/eval_prompts.jsonl" --demos="$DATA/sft_val.jsonl" --out_dir="$OUT"
stage "done: $OUT/table.md, $OUT/frontier.png, $OUT/overoptimization.png"
