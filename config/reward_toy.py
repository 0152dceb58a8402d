# The Bradley-Terry reward model of the toy world, on CPU, from the toy SFT checkpoint.
# Run after: python sft.py --config config/sft_toy.py
out_dir = "out/toy/reward"
init_from = "out/toy/sft"
train_data = "data/toy/prefs_train.jsonl"
val_data = "data/toy/prefs_val.jsonl"
rl_prompts = "data/toy/rl_prompts.jsonl"

batch_size = 32
grad_accum_steps = 1
# measured: lr 1e-3 overfit 2000 pairs (held-out loss rising after ~300 steps); 4e-4 x 400 steps on the 8000
# pairs: gold-ranking accuracy 0.987 on the held-out pairs, each pair seen 1.6 times (every 100 steps more cost ~35 s)
max_iters = 400
learning_rate = 4e-4
min_lr = 3e-5
warmup_iters = 20
weight_decay = 0.0

eval_interval = 200
log_interval = 25
norm_samples = 512
max_new_tokens = 96
toy_eval = True
device = "cpu"
dtype = "bfloat16"
