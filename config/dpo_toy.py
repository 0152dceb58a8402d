# DPO on the toy world, on CPU, from the toy SFT checkpoint.
# Run after: python sft.py --config config/sft_toy.py
out_dir = "out/toy/dpo"
init_from = "out/toy/sft"
train_data = "data/toy/prefs_train.jsonl"
val_data = "data/toy/prefs_val.jsonl"
toy_eval = True
eval_prompts = "data/toy/eval_prompts.jsonl"

beta = 0.1
loss_type = "sigmoid"
batch_size = 32
grad_accum_steps = 1
max_iters = 100
learning_rate = 5e-5
min_lr = 5e-5
warmup_iters = 10

eval_interval = 10
max_chosen_drop = 0.5  # stop before DPO pushes probability off the chosen answers (see dpo.py)
log_interval = 10
max_new_tokens = 64
device = "cpu"
dtype = "bfloat16"
