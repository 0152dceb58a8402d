# KTO on the toy world, on CPU, from the toy SFT checkpoint: the preference pairs split into one desirable
# (chosen) and one undesirable (rejected) completion each, the pairing thrown away.
# Run after: python sft.py --config config/sft_toy.py      (kto.py's docstring has the loss)
out_dir = "out/toy/kto"
init_from = "out/toy/sft"
train_data = "data/toy/prefs_train.jsonl"
val_data = "data/toy/prefs_val.jsonl"
toy_eval = True
eval_prompts = "data/toy/eval_prompts.jsonl"

beta = 1.0  # the highest held-out pair accuracy of 0.1, 0.3, 1.0 (scripts/direct_sweep.sh: validation pairs only)
desirable_weight = 0.0  # from the class balance: 1, the pairs give as many desirable as undesirable examples
undesirable_weight = 1.0
batch_size = 64  # examples: the completions of 32 pairs, as many as dpo_toy.py's step sees
grad_accum_steps = 1
max_iters = 60
learning_rate = 5e-5  # dpo_toy.py's
min_lr = 5e-5
warmup_iters = 10

eval_interval = 10
eval_max_examples = 800  # the 400 pairs dpo_toy.py evaluates, as 800 examples
log_interval = 10
max_new_tokens = 64
device = "cpu"
dtype = "auto"
