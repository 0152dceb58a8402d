#!/usr/bin/env bash
# Every method on the toy world, for several seeds, and one table of mean +- std with intervals: which differences
# are real. One toy world (data/toy/prepare.py's default seed: the same prompts, pairs and evaluation prompts for
# every seed); for each training seed, every stage's --seed: SFT, the reward model, then from that seed's
# checkpoints PPO, GRPO (reward model), GRPO with the verifier on the math prompts, DPO, cDPO (config/dpo_toy.py, the
# demo's), IPO, KTO, SimPO and ORPO, at the settings of the demo and scripts/grpo_experiments.sh /
# direct_experiments.sh; evaluate.py on that seed's models (with best-of-N from its SFT and the jailbreak prompts);
# then evaluate.py --aggregate over the seeds -> OUT_DIR/table.md, results.json, frontier.png.
# Seed 1337 is every config's default: its SFT, reward, PPO, GRPO and cDPO runs are the demo's.
# Usage: bash scripts/seeds.sh [OUT_DIR]      (default out/seeds; SEEDS="1337 1338 1339" by default)
# Resumable: re-run the same command after a stop. A stage that finished is not run again (its .done marker), one
# that was stopped continues from its checkpoint (--resume=True) or, without one, starts again; an evaluation
# that finished is kept. About 14 minutes per seed on 2 cores. QUICK=1, STAGE_FLAGS and EVAL_FLAGS as in demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
source scripts/quick_flags.sh
OUT=${1:-out/seeds}
read -r -a seeds <<< "${SEEDS:-1337 1338 1339}"
[ "${#seeds[@]}" -ge 2 ] || { echo "error: SEEDS needs two or more seeds (one seed has no spread)" >&2; exit 2; }
t0=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }
mkdir -p "$OUT"
DATA="$OUT/data"
if [ ! -e "$DATA/.done" ]; then
  stage "toy world -> $DATA"
  "$PY" -m data.toy.prepare --out_dir "$DATA"
  touch "$DATA/.done"
fi

run() {  # run DIR SCRIPT FLAGS...: one stage into DIR, unless it finished before; marked finished when it exits 0
  local dir=$1 script=$2; shift 2
  if [ -e "$dir/.done" ]; then echo "finished before: $dir"; return; fi
  local again=()
  if [ -e "$dir/ckpt.pt" ]; then again=(--resume=True); elif [ -e "$dir" ]; then again=(--overwrite=True); fi
  stage "$dir: $script $* ${again[*]+"${again[*]}"}"
  "$PY" "$script" "$@" --out_dir="$dir" ${again[@]+"${again[@]}"}
  touch "$dir/.done"
}

aggregate=()
for seed in "${seeds[@]}"; do
  S="$OUT/seed_$seed"
  rl=(--sft_dir="$S/sft" --reward_dir="$S/reward" --prompts="$DATA/rl_prompts.jsonl" --eval_prompts="$DATA/eval_prompts.jsonl" --seed="$seed")
  pairs=(--init_from="$S/sft" --train_data="$DATA/prefs_train.jsonl" --val_data="$DATA/prefs_val.jsonl"
         --eval_prompts="$DATA/eval_prompts.jsonl" --seed="$seed")
  run "$S/sft" sft.py --config config/sft_toy.py --train_data="$DATA/sft_train.jsonl" --val_data="$DATA/sft_val.jsonl" \
    --tokenizer="$DATA/vocab.json" --seed="$seed" ${q_sft[@]+"${q_sft[@]}"}
  run "$S/reward" reward.py --config config/reward_toy.py --init_from="$S/sft" --train_data="$DATA/prefs_train.jsonl" \
    --val_data="$DATA/prefs_val.jsonl" --rl_prompts="$DATA/rl_prompts.jsonl" --seed="$seed" ${q_rm[@]+"${q_rm[@]}"}
  run "$S/ppo" ppo.py --config config/ppo_toy.py "${rl[@]}" ${q_ppo[@]+"${q_ppo[@]}"}
  run "$S/grpo" grpo.py --config config/grpo_toy.py "${rl[@]}" ${q_grpo[@]+"${q_grpo[@]}"}
  run "$S/grpo_math" grpo.py --config config/grpo_toy.py "${rl[@]}" --reward=verifier --prompt_kinds=math ${q_grpo[@]+"${q_grpo[@]}"}
  run "$S/dpo" dpo.py --config config/dpo_toy.py "${pairs[@]}" --label_smoothing=0 ${q_dpo[@]+"${q_dpo[@]}"}
  run "$S/cdpo" dpo.py --config config/dpo_toy.py "${pairs[@]}" ${q_dpo[@]+"${q_dpo[@]}"}
  run "$S/ipo" dpo.py --config config/dpo_toy.py "${pairs[@]}" --loss_type=ipo --label_smoothing=0 ${q_dpo[@]+"${q_dpo[@]}"}
  run "$S/kto" kto.py --config config/kto_toy.py "${pairs[@]}" ${q_kto[@]+"${q_kto[@]}"}
  run "$S/simpo" dpo.py --config config/dpo_simpo_toy.py "${pairs[@]}" ${q_dpo[@]+"${q_dpo[@]}"}
  run "$S/orpo" dpo.py --config config/dpo_orpo_toy.py "${pairs[@]}" ${q_dpo[@]+"${q_dpo[@]}"}
  if [ ! -e "$S/eval/.done" ]; then
    stage "$S/eval: evaluate.py"
    models=sft:$S/sft
    for m in ppo grpo grpo_math dpo cdpo ipo kto simpo orpo; do models+=",$m:$S/$m"; done
    "$PY" evaluate.py --checkpoints="$models" --reference="$S/sft" --reward_dir="$S/reward" \
      --eval_prompts="$DATA/eval_prompts.jsonl" --demos="$DATA/sft_val.jsonl" --jailbreak_prompts="$DATA/jailbreak_prompts.jsonl" \
      --bon="${BON:-1,2,4,8,16,32,64}" --out_dir="$S/eval" --overwrite=True ${q_eval[@]+"${q_eval[@]}"}
    touch "$S/eval/.done"
  fi
  aggregate+=("seed_$seed:$S/eval")
done
stage "aggregate over ${#seeds[@]} seeds"
"$PY" evaluate.py --aggregate="$(IFS=,; echo "${aggregate[*]}")" --out_dir="$OUT" --overwrite=True
stage "done: $OUT/table.md, $OUT/results.json, $OUT/frontier.png (each seed's own in $OUT/seed_*/eval)"
