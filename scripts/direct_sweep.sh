#!/usr/bin/env bash
# The small sweep behind the toy defaults of KTO, SimPO and ORPO, on the preference *validation* data only:
# each method's main knob at three values from the same SFT checkpoint, the gold judge off (toy_eval=False:
# the evaluation prompts are never read), and the held-out preference accuracy at the last step (the fraction
# of the 1000 validation pairs whose chosen response the method's own reward ranks first; KTO's on the pairs
# split in two) printed for each, the highest marked. DPO, IPO and cDPO keep dpo_toy.py's beta.
#   kto    beta in 0.1 0.3 1.0          simpo  beta in 1 2 4 (gamma = beta / 2)          orpo  lambda in 0.1 0.3 1.0
# Usage: bash scripts/direct_sweep.sh DEMO_DIR [OUT_DIR]   (default OUT_DIR: DEMO_DIR/direct_sweep; never overwrites)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEMO=${1:?usage: bash scripts/direct_sweep.sh DEMO_DIR [OUT_DIR]}
OUT=${2:-$DEMO/direct_sweep}
source scripts/from_demo.sh
from_demo data sft
run() {  # run NAME SCRIPT CONFIG FLAGS...
  local name=$1 script=$2 config=$3; shift 3
  stage "$name: $script --config $config $*"
  "$PY" "$script" --config "$config" --out_dir="$OUT/$name" --init_from="$DEMO/sft" --train_data="$DATA/prefs_train.jsonl" \
    --val_data="$DATA/prefs_val.jsonl" --eval_max_examples=0 --toy_eval=False "$@"
}
for beta in 0.1 0.3 1.0; do run "kto_beta$beta" kto.py config/kto_toy.py --beta="$beta"; done
for beta in 1 2 4; do
  run "simpo_beta$beta" dpo.py config/dpo_simpo_toy.py --beta="$beta" --simpo_gamma="$("$PY" -c "print($beta / 2)")"
done
for lam in 0.1 0.3 1.0; do run "orpo_lambda$lam" dpo.py config/dpo_orpo_toy.py --orpo_lambda="$lam"; done
stage "held-out preference accuracy at the last step (validation pairs only)"
"$PY" - "$OUT" <<'PYEOF'
import json, os, sys
out = sys.argv[1]
best = {}
rows = []
for name in sorted(os.listdir(out)):
    evals = [r for r in map(json.loads, open(os.path.join(out, name, "metrics.jsonl"))) if "val/rewards/accuracies" in r]
    method = name.split("_")[0]
    rows.append((method, name, evals[-1]["val/rewards/accuracies"], evals[-1]["val/loss"]))
    if evals[-1]["val/rewards/accuracies"] > best.get(method, ("", -1))[1]:
        best[method] = (name, evals[-1]["val/rewards/accuracies"])
print("| run | val/rewards/accuracies | val/loss | |\n| --- | --- | --- | --- |")
for method, name, acc, loss in rows:
    print(f"| {name} | {acc:.3f} | {loss:.4f} | {'highest' if best[method][0] == name else ''} |")
PYEOF
