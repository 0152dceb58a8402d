# DPO of GPT-2-small on HH-RLHF from the HH SFT checkpoint, one GPU (or torchrun, see dpo.py).
out_dir = "out/gpt2_hh/dpo"
init_from = "out/gpt2_hh/sft"
train_data = "data/hh_rlhf/prefs_train.jsonl"
val_data = "data/hh_rlhf/prefs_val.jsonl"
skip_long = True

beta = 0.1
loss_type = "sigmoid"
batch_size = 8
grad_accum_steps = 8
max_iters = 1000
learning_rate = 5e-7  # the DPO paper's learning rate
min_lr = 5e-7
warmup_iters = 150

eval_interval = 100
eval_max_examples = 2000
compile = True
