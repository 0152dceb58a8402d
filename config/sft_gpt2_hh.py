# SFT of GPT-2-small (124M) on the chosen responses of Anthropic HH-RLHF, one GPU.
# Data: python -m data.hh_rlhf.prepare   (downloads once; writes data/hh_rlhf/*.jsonl)
# Several GPUs: torchrun --standalone --nproc_per_node=8 sft.py --config config/sft_gpt2_hh.py
out_dir = "out/gpt2_hh/sft"
init_from = "gpt2"
train_data = "data/hh_rlhf/sft_train.jsonl"
val_data = "data/hh_rlhf/sft_val.jsonl"
skip_long = True  # a few HH conversations exceed GPT-2's 1024 tokens

batch_size = 8
grad_accum_steps = 4  # with several GPUs divide it by their number, to keep the global batch
max_iters = 2000  # 32 x ~250 tokens a step, 16M tokens: ~10 min on an H100 at ~40% MFU (not measured)
learning_rate = 2e-5
min_lr = 2e-6
warmup_iters = 100
weight_decay = 0.0
dropout = 0.0

eval_interval = 250
eval_max_examples = 1024
log_interval = 10
sample_interval = 500
max_new_tokens = 128
compile = True
