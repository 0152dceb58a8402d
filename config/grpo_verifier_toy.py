# GRPO with a verifiable reward on the toy world, on CPU: the sums' rule (data/toy/verifier.py's math_reward) is the
# only reward, and every kind of prompt is sampled. Where the rule cannot check (refusals, topics, "I don't know")
# the reward is 0 (unverified = 'zero'), so only PPO's KL penalty ranks those responses: it holds them at the SFT
# policy while the sums are trained. Two models (policy, reference): no reward model is loaded.
# Run after: python sft.py --config config/sft_toy.py
# The budget (iterations, prompts x group size) was chosen by scripts/grpo_verifier_select.sh on the tuning prompts
# over 3 seeds, never the evaluation prompts, and then measured once on them (README, "Choosing the verifier run's
# budget on the tuning prompts"). Everything not set here is config/grpo_toy.py's (tests/test_configs.py checks).
out_dir = "out/toy/grpo_verifier"
sft_dir = "out/toy/sft"
reward = "verifier"
unverified = "zero"
prompts = "data/toy/rl_prompts.jsonl"
toy_eval = True
eval_prompts = "data/toy/eval_prompts.jsonl"

prompts_per_iter = 32  # P
group_size = 8  # G: 256 responses per iteration; about a quarter are sums, the rest only anchored by the KL
max_new_tokens = 48
temperature = 1.0
missing_eos_penalty = 1.0

advantage = "grpo"
loss_agg = "grpo"
kl_coef = 0.3  # PPO's penalty in the reward, as config/grpo_toy.py: on the unverified prompts it is the whole reward
kl_in = "reward"
clip_low = 0.2
clip_high = 0.2

max_iters = 120  # the sums reach ~0.96 on the tuning prompts by 120 (0.95 by 90)
grpo_epochs = 1  # on-policy
minibatch_size = 64  # 4 gradient steps per batch, as config/grpo_toy.py
learning_rate = 5e-5
grad_clip = 1.0

eval_interval = 30
sample_interval = 30
device = "cpu"
dtype = "auto"
