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
# conservative DPO with eps = the toy world's documented label-noise rate (10% of pairs swapped). Measured
# (lr 5e-5, 120 steps, no early stop): plain DPO peaked at gold +0.58 (step 40) and fell to +0.11 by step 110
# as well-formed dropped to 0.66; with eps = 0.1 the peak was +0.62 (step 30) and it held around +0.5.
label_smoothing = 0.1
batch_size = 32
grad_accum_steps = 1
max_iters = 80
learning_rate = 5e-5
min_lr = 5e-5
warmup_iters = 10

eval_interval = 10
eval_max_pairs = 400  # of the 1000 held-out pairs: enough for the early-stop signal, cheaper every 10 steps
max_chosen_drop = 0.5  # stop before DPO pushes probability off the chosen answers (see dpo.py)
log_interval = 10
max_new_tokens = 64
device = "cpu"
dtype = "bfloat16"
