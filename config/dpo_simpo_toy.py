# SimPO (reference-free, length-normalised) on the toy world, on CPU, from the toy SFT checkpoint.
# Run after: python sft.py --config config/sft_toy.py      (dpo.py's docstring has the loss)
out_dir = "out/toy/simpo"
init_from = "out/toy/sft"
train_data = "data/toy/prefs_train.jsonl"
val_data = "data/toy/prefs_val.jsonl"
toy_eval = True
eval_prompts = "data/toy/eval_prompts.jsonl"

loss_type = "simpo"
beta = 4.0  # the highest held-out pair accuracy of 1, 2, 4 (scripts/direct_sweep.sh: validation pairs only); the
# SimPO paper's range is 2-2.5 (its rewards are per-token log-probs, so beta is larger than DPO's)
simpo_gamma = 2.0  # gamma / beta = 0.5, the paper's usual ratio
batch_size = 32
grad_accum_steps = 1
max_iters = 60
learning_rate = 5e-5  # dpo_toy.py's, so that the methods differ only in the loss
min_lr = 5e-5
warmup_iters = 10

eval_interval = 10
eval_max_examples = 400
max_chosen_drop = 0.0  # the early stop needs a reference model, which SimPO does not load
log_interval = 10
max_new_tokens = 64
device = "cpu"
dtype = "auto"
