# SFT of a tiny character-level GPT (0.8M parameters) on the toy assistant world, on CPU.
# Prepare the data first: python -m data.toy.prepare
out_dir = "out/toy/sft"
init_from = "scratch"
train_data = "data/toy/sft_train.jsonl"
val_data = "data/toy/sft_val.jsonl"
tokenizer = "data/toy/vocab.json"

block_size = 128
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

batch_size = 32
grad_accum_steps = 1
max_iters = 800
learning_rate = 2e-3  # a tiny model from scratch takes a much larger step than fine-tuning GPT-2
min_lr = 2e-4
warmup_iters = 50
weight_decay = 0.1

eval_interval = 200
log_interval = 50
sample_interval = 400
max_new_tokens = 96
device = "cpu"
dtype = "auto"  # bf16 autocast where the CPU has bf16 instructions; float32 where bf16 would be ~100x slower
