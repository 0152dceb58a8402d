# The Bradley-Terry reward model of the toy world, on CPU, from the toy SFT checkpoint.
# Run after: python sft.py --config config/sft_toy.py
# The measurements behind these settings: data/toy/README.md, "Why the toy configs are set as they are".
out_dir = "out/toy/reward"
init_from = "out/toy/sft"
train_data = "data/toy/prefs_train.jsonl"
val_data = "data/toy/prefs_val.jsonl"
rl_prompts = "data/toy/rl_prompts.jsonl"

batch_size = 32
grad_accum_steps = 1
max_iters = 400  # each of the 8000 pairs seen 1.6 times: enough, and every 100 steps more cost ~35 s
learning_rate = 4e-4  # 1e-3 over-fit (held-out loss rising after ~300 steps)
min_lr = 3e-5
warmup_iters = 20
weight_decay = 0.0

eval_interval = 200
log_interval = 25
norm_samples = 512
max_new_tokens = 96
toy_eval = True
device = "cpu"
dtype = "auto"  # bf16 autocast where the CPU has bf16 instructions; float32 where bf16 would be ~100x slower
