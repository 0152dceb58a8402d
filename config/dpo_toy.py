# DPO on the toy world, on CPU, from the toy SFT checkpoint.
# Run after: python sft.py --config config/sft_toy.py
# The measurements behind these settings: data/toy/README.md, "Why the toy configs are set as they are".
out_dir = "out/toy/dpo"
init_from = "out/toy/sft"
train_data = "data/toy/prefs_train.jsonl"
val_data = "data/toy/prefs_val.jsonl"
toy_eval = True
eval_prompts = "data/toy/eval_prompts.jsonl"

beta = 0.3  # picked by the frontier sweep of scripts/experiments.sh, on an earlier world
loss_type = "sigmoid"
label_smoothing = 0.05  # conservative DPO's eps = the world's label noise (5% of pairs swapped)
rpo_alpha = 1.0  # RPO's NLL term on the chosen (Pang et al. 2024): without it well-formedness collapsed
batch_size = 32
grad_accum_steps = 1
max_iters = 60
learning_rate = 5e-5
min_lr = 5e-5
warmup_iters = 10

eval_interval = 10
eval_max_examples = 400  # of the 1000 held-out pairs: enough for the early-stop signal, cheaper every 10 steps
max_chosen_drop = 0.5  # a safety net: stop if the typical chosen answer loses 0.5 nats (see dpo.py)
log_interval = 10
max_new_tokens = 64
device = "cpu"
dtype = "auto"  # bf16 autocast where the CPU has bf16 instructions; float32 where bf16 would be ~100x slower
