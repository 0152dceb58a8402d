# Sourced by scripts/demo.sh and scripts/seeds.sh: the flags each stage gets. With QUICK=1 every stage runs a few
# steps only (a wiring check, used by the tests; numbers meaningless); otherwise none. Then STAGE_FLAGS (e.g.
# "--device=cuda --compile=True") are added to every training stage and EVAL_FLAGS to evaluate.py.
if [ -n "${QUICK:-}" ]; then
  q_sft=(--max_iters=4 --eval_interval=2 --sample_interval=0 --eval_max_examples=32)
  q_rm=(--max_iters=4 --eval_interval=2 --norm_samples=16)
  q_ppo=(--max_iters=2 --eval_interval=2 --batch_size=8 --minibatch_size=4)
  q_grpo=(--max_iters=2 --eval_interval=2 --prompts_per_iter=4 --minibatch_size=8)
  q_dpo=(--max_iters=4 --eval_interval=2 --max_chosen_drop=0)
  q_kto=(--max_iters=4 --eval_interval=2)
  q_eval=(--samples_per_prompt=1)
else
  q_sft=(); q_rm=(); q_ppo=(); q_grpo=(); q_dpo=(); q_kto=(); q_eval=()
fi
read -r -a extra <<< "${STAGE_FLAGS:-}"
read -r -a q_eval_extra <<< "${EVAL_FLAGS:-}"
q_sft+=(${extra[@]+"${extra[@]}"}); q_rm+=(${extra[@]+"${extra[@]}"}); q_ppo+=(${extra[@]+"${extra[@]}"})
q_grpo+=(${extra[@]+"${extra[@]}"}); q_dpo+=(${extra[@]+"${extra[@]}"}); q_kto+=(${extra[@]+"${extra[@]}"})
q_eval+=(${q_eval_extra[@]+"${q_eval_extra[@]}"})
