#!/usr/bin/env bash
# The CUDA path, checked on one GPU in a few minutes with no network (what the CPU tests cannot reach):
#  1. the toy pipeline, QUICK-sized (scripts/demo.sh QUICK=1), on the GPU: bf16 autocast, fused AdamW,
#     torch.compile on for every training stage;
#  2. SFT through torchrun --nproc_per_node=1 (the DDP path: nccl on a GPU);
#  3. SFT in float16 with the GradScaler;
#  4. bench/gpu_throughput.py: SFT and DPO step throughput with MFU, and PPO rollout tokens/s, at GPT-2-small
#     geometry (random weights).
# Then one table: each check, pass / FAIL / skipped, and its seconds.
# Usage: bash scripts/gpu_check.sh [--device=cuda|cpu] [OUT_DIR]   (default OUT_DIR: a temporary directory)
# --device=cpu runs the same checks on CPU at tiny sizes (no compile; float16 skipped: it needs a GPU):
# the test suite does, so that the script cannot rot.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=cuda
if [ "${1:-}" = "--device=cpu" ] || [ "${1:-}" = "--device=cuda" ]; then DEVICE=${1#--device=}; shift; fi
OUT=${1:-$(mktemp -d -t gpu-check-XXXXXX)}
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then echo "error: $OUT is not empty; pass another directory" >&2; exit 2; fi
if [ "$DEVICE" = cuda ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" ||
    { echo "error: PyTorch sees no CUDA GPU here; run with --device=cpu for the CPU version" >&2; exit 2; }
  stage_flags="--device=cuda --dtype=bfloat16 --compile=True"; eval_flags="--device=cuda --dtype=bfloat16"; bench=()
else
  stage_flags="--device=cpu"; eval_flags="--device=cpu"; bench=(--tiny)
fi
mkdir -p "$OUT"
results=()
failed=0
check() {  # check NAME COMMAND...: run it, its output in OUT/NAME.log; record pass or FAIL and the seconds
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "=== $name: $*"
  if "$@" > "$OUT/$name.log" 2>&1; then results+=("| $name | pass | $(( $(date +%s) - t0 )) |")
  else results+=("| $name | FAIL (see $OUT/$name.log) | $(( $(date +%s) - t0 )) |"); failed=1; tail -5 "$OUT/$name.log"; fi
}
check toy_pipeline env QUICK=1 SKIP_INSTALL=1 STAGE_FLAGS="$stage_flags" EVAL_FLAGS="$eval_flags" bash scripts/demo.sh "$OUT/toy"
quick_sft=(--config config/sft_toy.py --train_data="$OUT/toy/data/sft_train.jsonl" --val_data="$OUT/toy/data/sft_val.jsonl"
           --tokenizer="$OUT/toy/data/vocab.json" --max_iters=4 --eval_interval=2 --sample_interval=0 --eval_max_examples=32)
check torchrun_1_process "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 sft.py "${quick_sft[@]}" \
  --out_dir="$OUT/sft_torchrun" $stage_flags
if [ "$DEVICE" = cuda ]; then
  check float16_scaler "$PY" sft.py "${quick_sft[@]}" --out_dir="$OUT/sft_fp16" --device=cuda --dtype=float16
else
  results+=("| float16_scaler | skipped (float16 needs a GPU) | 0 |")
fi
check throughput "$PY" bench/gpu_throughput.py --device="$DEVICE" ${bench[@]+"${bench[@]}"}
echo
"$PY" -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() and '$DEVICE' == 'cuda' else 'CPU', '| torch', torch.__version__, '| $(date -u +%Y-%m-%d)')"
echo "| check | result | seconds |"
echo "| --- | --- | --- |"
printf '%s\n' "${results[@]}"
echo
[ -f "$OUT/throughput.log" ] && grep -v "^===" "$OUT/throughput.log"
exit $failed
