# PPO on GPT-2-small with the HH reward model, one GPU.
# Several GPUs: torchrun --standalone --nproc_per_node=8 ppo.py --config config/ppo_gpt2_hh.py
# (each rank rolls out batch_size prompts; advantage statistics are all-reduced)
out_dir = "out/gpt2_hh/ppo"
sft_dir = "out/gpt2_hh/sft"
reward_dir = "out/gpt2_hh/reward"
value_init = "reward"
prompts = "data/hh_rlhf/rl_prompts.jsonl"
skip_long = True  # prompts longer than 1024 - max_new_tokens

batch_size = 64
max_new_tokens = 128
temperature = 1.0
missing_eos_penalty = 1.0

kl_coef = 0.05
adaptive_kl = True  # Ziegler et al.: target 6 nats per response
target_kl = 6.0
kl_horizon = 10000

max_iters = 500
ppo_epochs = 4
minibatch_size = 8
learning_rate = 1e-6
clip_coef = 0.2
clip_coef_vf = 0.2
vf_coef = 0.1
gamma = 1.0
lam = 0.95

eval_interval = 50
sample_interval = 10
