# GRPO on GPT-2-small with the HH reward model, one GPU: the policy, the reference and the reward model.
# Several GPUs: torchrun --standalone --nproc_per_node=8 grpo.py --config config/grpo_gpt2_hh.py
# (each rank samples whole groups for its prompts_per_iter prompts; no statistic crosses ranks)
out_dir = "out/gpt2_hh/grpo"
sft_dir = "out/gpt2_hh/sft"
reward_dir = "out/gpt2_hh/reward"
reward = "model"
prompts = "data/hh_rlhf/rl_prompts.jsonl"
skip_long = True  # prompts longer than 1024 - max_new_tokens

prompts_per_iter = 8  # P
group_size = 8  # G: 64 responses per iteration per GPU
max_new_tokens = 128
temperature = 1.0
missing_eos_penalty = 1.0

advantage = "grpo"
loss_agg = "dapo"  # every token weighs the same: long HH responses do not dilute their tokens' gradient
kl_coef = 0.04  # DeepSeekMath's beta
kl_in = "loss"
clip_low = 0.2
clip_high = 0.28  # DAPO's clip-higher

max_iters = 500
grpo_epochs = 1
minibatch_size = 16
learning_rate = 1e-6

eval_interval = 50
sample_interval = 10
