# SimPO of GPT-2-small on HH-RLHF from the HH SFT checkpoint, one GPU (or torchrun, see dpo.py).
# A starting point from the SimPO paper's ranges, not tuned here.
out_dir = "out/gpt2_hh/simpo"
init_from = "out/gpt2_hh/sft"
train_data = "data/hh_rlhf/prefs_train.jsonl"
val_data = "data/hh_rlhf/prefs_val.jsonl"
skip_long = True

loss_type = "simpo"
beta = 2.0
simpo_gamma = 1.0
batch_size = 8
grad_accum_steps = 8
max_iters = 1000
learning_rate = 5e-7
min_lr = 5e-7
warmup_iters = 150

eval_interval = 100
eval_max_examples = 2000
compile = True
