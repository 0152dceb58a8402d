# PPO on the toy world, on CPU, from the toy SFT and reward checkpoints.
# Run after: python sft.py --config config/sft_toy.py && python reward.py --config config/reward_toy.py
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

# measured with the toy reward model (60-80 iterations): beta 0.1 let the policy drift into misspellings the
# reward model does not punish (well-formed 0.97 -> 0.86-0.90); beta 0.3 held well-formed at 0.94-0.96 while
# gold rose +0.44 -> +0.68-0.72; beta 0 is the reward-hacking experiment (gold -0.5 by iteration 40)
kl_coef = 0.3
adaptive_kl = False

total_iters = 60
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
dtype = "bfloat16"
