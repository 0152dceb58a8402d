# Reward model on GPT-2-small from the HH SFT checkpoint, one GPU (or torchrun, see reward.py).
# Not yet run on a GPU here: no accuracy is claimed for it.
out_dir = "out/gpt2_hh/reward"
init_from = "out/gpt2_hh/sft"
train_data = "data/hh_rlhf/prefs_train.jsonl"
val_data = "data/hh_rlhf/prefs_val.jsonl"
rl_prompts = "data/hh_rlhf/rl_prompts.jsonl"
skip_long = True

batch_size = 8
grad_accum_steps = 4
max_iters = 2000  # ~64k of HH's ~160k pairs: one pass over a part, as reward models over-fit fast
learning_rate = 1e-5
min_lr = 1e-6
warmup_iters = 100

eval_interval = 250
eval_max_examples = 2000
norm_samples = 1024
max_new_tokens = 128
compile = True
