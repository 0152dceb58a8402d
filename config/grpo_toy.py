# GRPO on the toy world, on CPU, from the toy SFT and reward checkpoints: three models, no value model.
# Run after: python sft.py --config config/sft_toy.py && python reward.py --config config/reward_toy.py
# Verifiable rewards on the sums: --reward=verifier --prompt_kinds=math --out_dir=out/toy/grpo_math
out_dir = "out/toy/grpo"
sft_dir = "out/toy/sft"
reward_dir = "out/toy/reward"
reward = "model"
prompts = "data/toy/rl_prompts.jsonl"
toy_eval = True
eval_prompts = "data/toy/eval_prompts.jsonl"

prompts_per_iter = 16  # P
group_size = 4  # G: 64 responses per iteration, as PPO's batch
max_new_tokens = 48  # the longest prompt is 72 tokens with the template; responses are <= ~30
temperature = 1.0
missing_eos_penalty = 1.0

advantage = "grpo"
loss_agg = "grpo"
# PPO's KL, as PPO applies it: R_i - beta * sum_t (log pi - log pi_ref). Chosen by scripts/grpo_select.sh on the
# tuning prompts (never the evaluation prompts), over 3 seeds: gold +0.83 +- 0.02 against +0.79 +- 0.05 for beta
# 0.1 as k3 in the loss (GRPO's), +0.76 +- 0.03 for 0.3 in the loss, +0.79 +- 0.01 for Dr. GRPO (README)
kl_coef = 0.3
kl_in = "reward"
clip_low = 0.2
clip_high = 0.2

max_iters = 60
grpo_epochs = 1  # on-policy
minibatch_size = 16  # 4 gradient steps per batch
learning_rate = 5e-5  # PPO's
grad_clip = 1.0

eval_interval = 10
sample_interval = 20
device = "cpu"
dtype = "auto"  # bf16 autocast where the CPU has bf16 instructions; float32 where bf16 would be ~100x slower
