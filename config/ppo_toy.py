# PPO on the toy world, on CPU, from the toy SFT and reward checkpoints.
# Run after: python sft.py --config config/sft_toy.py && python reward.py --config config/reward_toy.py
# The measurements behind these settings: data/toy/README.md, "Why the toy configs are set as they are".
out_dir = "out/toy/ppo"
sft_dir = "out/toy/sft"
reward_dir = "out/toy/reward"
value_init = "reward"
prompts = "data/toy/rl_prompts.jsonl"
toy_eval = True
eval_prompts = "data/toy/eval_prompts.jsonl"

batch_size = 64
max_new_tokens = 48  # the longest prompt is 72 tokens with the template; responses are <= ~30
temperature = 1.0
missing_eos_penalty = 1.0

kl_coef = 0.3  # beta: 0.1 let PPO drift into misspellings the reward model does not punish
adaptive_kl = False

max_iters = 60
ppo_epochs = 4
minibatch_size = 16
learning_rate = 5e-5  # measured: 3e-4 gave approx_kl 0.25 on the first update and wrecked the policy
clip_coef = 0.2
clip_coef_vf = 0.2
vf_coef = 0.1
gamma = 1.0
lam = 0.95
grad_clip = 1.0

eval_interval = 10
sample_interval = 20
device = "cpu"
dtype = "auto"  # bf16 autocast where the CPU has bf16 instructions; float32 where bf16 would be ~100x slower
