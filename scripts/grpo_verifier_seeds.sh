#!/usr/bin/env bash
# Does the anchored verifier run hold the kinds the rule does not train when the SFT policy it starts from is
# another draw? scripts/grpo_verifier_select.sh chose config/grpo_verifier_toy.py's budget over three GRPO seeds from
# one SFT checkpoint; another SFT seed, or the same seed on another CPU (bf16 rounds differently), is another
# starting policy. From a finished demo run, for each seed: SFT with that seed (seed 1337 is the demo's own
# checkpoint), config/grpo_verifier_toy.py from it with the same seed, and evaluate.py at 16 samples per prompt beside
# that seed's SFT -> OUT/seed_S/eval; then evaluate.py --aggregate -> OUT/table.md (each seed's change from its own
# SFT, mean [95% interval]) and every seed's rates in OUT/results.json. Nothing here is chosen: the config is fixed.
# Usage: bash scripts/grpo_verifier_seeds.sh DEMO_DIR [OUT_DIR]   (default OUT_DIR: DEMO_DIR/grpo_verifier_seeds;
# never overwrites). About 8-12 minutes per seed on 2 cores; SEEDS="1337 1338 1339" by default.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEMO=${1:?usage: bash scripts/grpo_verifier_seeds.sh DEMO_DIR [OUT_DIR]}
OUT=${2:-$DEMO/grpo_verifier_seeds}
source scripts/from_demo.sh
read_seeds  # before from_demo: a bad SEEDS leaves OUT_DIR uncreated
from_demo data sft reward

aggregate=()
for seed in "${seeds[@]}"; do
  S="$OUT/seed_$seed"
  sft="$S/sft"
  if [ "$seed" = 1337 ]; then
    sft="$DEMO/sft"  # every config's default seed: the demo's SFT is this seed's
  else
    stage "seed $seed: SFT"
    "$PY" sft.py --config config/sft_toy.py --train_data="$DATA/sft_train.jsonl" --val_data="$DATA/sft_val.jsonl" \
      --tokenizer="$DATA/vocab.json" --seed="$seed" --out_dir="$sft"
  fi
  stage "seed $seed: GRPO with the verifier (config/grpo_verifier_toy.py)"
  "$PY" grpo.py --config config/grpo_verifier_toy.py --sft_dir="$sft" --prompts="$DATA/rl_prompts.jsonl" \
    --eval_prompts="$DATA/eval_prompts.jsonl" --seed="$seed" --out_dir="$S/grpo_verifier"
  stage "seed $seed: evaluate.py beside its SFT, 16 samples per prompt"
  # rm_score is the demo's reward model's (trained from seed 1337's SFT): a column only, nothing here uses it
  "$PY" evaluate.py --checkpoints="sft:$sft,grpo_verifier:$S/grpo_verifier" --reference="$sft" --reward_dir="$DEMO/reward" \
    --eval_prompts="$DATA/eval_prompts.jsonl" --demos="$DATA/sft_val.jsonl" --samples_per_prompt=16 --samples_md=0 \
    --out_dir="$S/eval"
  aggregate+=("seed_$seed:$S/eval")
done
stage "aggregate over ${#seeds[@]} seeds"
"$PY" evaluate.py --aggregate="$(IFS=,; echo "${aggregate[*]}")" --out_dir="$OUT"
stage "done: $OUT/table.md, $OUT/results.json (each seed's own in $OUT/seed_*/eval)"
