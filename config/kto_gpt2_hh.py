# KTO of GPT-2-small on HH-RLHF from the HH SFT checkpoint (pairs split into desirable and undesirable),
# one GPU (or torchrun, see kto.py). A starting point, not tuned here.
out_dir = "out/gpt2_hh/kto"
init_from = "out/gpt2_hh/sft"
train_data = "data/hh_rlhf/prefs_train.jsonl"
val_data = "data/hh_rlhf/prefs_val.jsonl"
skip_long = True

beta = 0.1  # the KTO paper's default
batch_size = 16
grad_accum_steps = 4
max_iters = 1000
learning_rate = 5e-7  # dpo_gpt2_hh.py's
min_lr = 5e-7
warmup_iters = 150

eval_interval = 100
eval_max_examples = 2000
compile = True
