"""
sft.py -- supervised fine-tuning: teach a GPT to answer in the dialogue format by imitating
demonstrations (the first stage of InstructGPT, Ouyang et al. 2022, section 3.5).

Each example is  "### Human: <prompt>\\n### Assistant:" + " <response>" + <end-of-text>.
The loss is the next-token cross-entropy on the response tokens and the end-of-text token only: the
prompt is given, not learned, and the model must learn to stop. It is the per-token mean over every
supervised token of the optimizer step -- across the gradient-accumulation micro-steps and the DDP
ranks -- so that a long response weighs more than a short one exactly as in one big batch:

    L = - (1 / N) * sum_{examples} sum_{t in response + eot} log p(x_t | x_<t),   N = supervised tokens in the step

Run (toy world on CPU, ~3 minutes; prepare the data first with `python -m data.toy.prepare`):
    python sft.py --config config/sft_toy.py
GPT-2-small on Anthropic HH-RLHF (one GPU; `python -m data.hh_rlhf.prepare` first):
    python sft.py --config config/sft_gpt2_hh.py
Several GPUs, or 2 CPU processes with gloo:
    torchrun --standalone --nproc_per_node=8 sft.py --config config/sft_gpt2_hh.py

Deviations from InstructGPT: no mixing of pre-training data; examples longer than block_size are an
error (or skipped and counted with --skip_long=True) instead of being truncated, so that no response
is silently cut before its end-of-text token.
"""

import os
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from checkpoint import (load_checkpoint, load_model, model_from_checkpoint, prepare_out_dir, restore_training_state,
                        save_checkpoint)
from configurator import parse_config, run_cli, stop_if_signalled
from data.batches import collate, tokenize_demonstrations
from data.formats import load_sft
from logger import MetricsLogger
from model import GPT, GPTConfig
from optim import configure_adamw, lr_at, optimizer_step, set_lr
from runtime import (backward_share, batch_indices, check_finite, micro_batches, reduce_metrics, setup_runtime, shard,
                     teardown, wrap_model)
from sampling import generate_responses
from tokenizer import get_tokenizer


@dataclass
class SFTConfig:
    # I/O
    out_dir: str = "out/sft"  # checkpoints, metrics.jsonl, loss.png, samples
    resume: bool = False  # continue the run in out_dir from its ckpt.pt
    overwrite: bool = False  # allow replacing a run that already lives in out_dir
    init_from: str = "gpt2"  # 'scratch', a GPT-2 name ('gpt2', 'gpt2-medium', ...), an HF directory, or a checkpoint dir
    # data
    train_data: str = "data/hh_rlhf/sft_train.jsonl"  # JSONL demonstrations: {"prompt","response"} or {"messages"}
    val_data: str = "data/hh_rlhf/sft_val.jsonl"  # held-out demonstrations for the validation loss
    tokenizer: str = "gpt2"  # 'gpt2' or a char vocab.json (ignored when init_from is a checkpoint: it has its own)
    skip_long: bool = False  # drop (and count) examples longer than block_size instead of stopping with an error
    # model (init_from='scratch' only)
    block_size: int = 1024  # context length in tokens
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    bias: bool = True
    dropout: float = 0.0  # dropout probability while training
    # optimisation
    batch_size: int = 8  # examples per micro-batch per process
    grad_accum_steps: int = 4  # micro-batches per optimizer step (per process)
    max_iters: int = 2000  # optimizer steps
    learning_rate: float = 2e-5  # peak AdamW learning rate
    min_lr: float = 2e-6  # learning rate at the end of the cosine decay
    warmup_iters: int = 100  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay on 2-D weights
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)
    overfit_batch: bool = False  # debugging: train on the same first batch every step
    # evaluation and logging
    eval_interval: int = 200  # steps between validation loss + checkpoint
    eval_max_examples: int = 512  # validation examples used (0 = all)
    log_interval: int = 10  # steps between training-loss lines
    sample_interval: int = 500  # steps between printed samples (0 = never)
    num_samples: int = 4  # prompts sampled from the validation set at each sample_interval
    max_new_tokens: int = 128  # response length limit when sampling
    wandb_project: str = None  # log to Weights & Biases under this project (pip install wandb)
    # system
    device: str = "auto"  # 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'
    dtype: str = "auto"  # 'auto' (bf16, or fp16 on GPUs without bf16), 'float32', 'bfloat16', 'float16'
    compile: bool = False  # torch.compile the model
    seed: int = 1337


# -----------------------------------------------------------------------------
# learning logic: the loss mask

def build_example(prompt_ids, response_ids, eot_id):
    """One training example: (inputs, labels), both of length len(prompt + response + eot) - 1.

    tokens = prompt + response + [eot]; inputs = tokens[:-1] and labels[t] is the token that should
    follow inputs[t], i.e. tokens[t + 1], or -100 (ignored) when tokens[t + 1] belongs to the prompt.
    So the first supervised position is the LAST prompt token, which must predict the first response
    token; the last one is the last response token, which must predict end-of-text."""
    tokens = prompt_ids + response_ids + [eot_id]
    labels = [-100] * len(prompt_ids) + response_ids + [eot_id]
    return tokens[:-1], labels[1:]


def training_examples(records, tok, block_size, path, skip_long):
    """SFT records -> ([(inputs, labels)] with build_example's mask, number skipped as too long)."""
    demos, n_long = tokenize_demonstrations(records, tok, block_size, path, skip_long)
    return [build_example(prompt, response, tok.eot_id) for prompt, response in demos], n_long


def supervised_loss_sum(logits, labels):
    """sum over supervised positions of -log p(label): logits (B, T, vocab), labels (B, T) with -100 =
    ignored. A batch with no supervised token gives 0, not NaN (a mean would divide by zero)."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")


# -----------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def evaluate_loss(model, examples, batch_size, pad_id, rt):
    """Validation loss: the per-token mean over every supervised token of `examples`, split across ranks."""
    model.eval()
    totals = {"loss_sum": torch.zeros((), device=rt.device), "n_tokens": torch.zeros((), device=rt.device)}
    mine = shard(examples, rt)
    for i in range(0, len(mine), batch_size):
        x, y = collate(mine[i:i + batch_size], pad_id, rt.device)  # (B, T), (B, T)
        with rt.autocast:
            logits, _ = model(x)  # (B, T, vocab)
        totals["loss_sum"] += supervised_loss_sum(logits, y)
        totals["n_tokens"] += (y != -100).sum()
    totals = reduce_metrics(totals)
    model.train()
    return totals["loss_sum"] / totals["n_tokens"]


def print_samples(model, tok, prompts, max_new_tokens, step, rt):
    """A response to each prompt at temperature 1 and greedily, printed to the log."""
    model.eval()
    for temperature in (1.0, 0.0):
        responses = generate_responses(model, tok, prompts, max_new_tokens, temperature=temperature,
                                       device=rt.device, autocast=rt.autocast)
        for p, (text, ended) in zip(prompts, responses):
            print(f"[sample step {step}, T={temperature}] {p!r} -> {text!r}{'' if ended else ' (no end-of-text)'}")
    model.train()


# -----------------------------------------------------------------------------

def main():
    config = parse_config(SFTConfig)
    rt = setup_runtime(config.device, config.dtype, config.seed)

    # --- model and tokenizer (a checkpoint brings its own tokenizer) ---------------------------
    resume_ckpt = load_checkpoint(config.out_dir, stages=("sft",), key="out_dir") if config.resume else None
    if resume_ckpt is not None:
        model, tok = model_from_checkpoint(resume_ckpt), get_tokenizer(resume_ckpt["tokenizer"])
    elif config.init_from == "scratch":
        if config.n_embd % config.n_head:
            raise ValueError(f"--n_embd={config.n_embd} must be a multiple of --n_head={config.n_head} (the heads split it)")
        tok = get_tokenizer(config.tokenizer)
        model = GPT(GPTConfig(block_size=config.block_size, vocab_size=tok.vocab_size, n_layer=config.n_layer,
                              n_head=config.n_head, n_embd=config.n_embd, dropout=config.dropout, bias=config.bias))
    else:
        model, tok_spec, _ = load_model(config.init_from, dropout=config.dropout, key="init_from")
        tok = get_tokenizer(tok_spec)

    # --- data: tokenised once, with sft's loss mask, validated before anything is written ------
    block_size = model.config.block_size
    train, n_long_train = training_examples(load_sft(config.train_data), tok, block_size, config.train_data, config.skip_long)
    val_records = load_sft(config.val_data)
    val, n_long_val = training_examples(val_records, tok, block_size, config.val_data, config.skip_long)
    val = val[:config.eval_max_examples or None]
    sample_prompts = [r["prompt"] for r in val_records[:max(config.num_samples, 0)]]
    global_batch = config.batch_size * config.grad_accum_steps * rt.world_size
    if rt.master:
        prepare_out_dir(config.out_dir, config.resume, config.overwrite, inputs={
            "init_from": config.init_from, "train_data": config.train_data, "val_data": config.val_data,
            "tokenizer": config.tokenizer})
        print(f"sft: {len(train)} train / {len(val)} val examples (skipped as too long: {n_long_train} / {n_long_val}), "
              f"{model.get_num_params() / 1e6:.2f}M parameters, {tok.vocab_size}-token vocabulary")
        print(f"sft: {global_batch} examples per step = {config.batch_size} x {config.grad_accum_steps} accumulation "
              f"x {rt.world_size} processes; {config.max_iters} steps; device {rt.device}, dtype {rt.dtype}")

    # --- optimizer, DDP -------------------------------------------------------------------------
    model.to(rt.device)
    optimizer = configure_adamw(model, config.learning_rate, config.weight_decay, (config.beta1, config.beta2), rt.device_type)
    step = restore_training_state(resume_ckpt, optimizer, rt.scaler) if resume_ckpt is not None else 0
    del resume_ckpt  # free the memory
    raw_model = model  # what gets saved and sampled: never the DDP wrapper or the compiled module
    model = wrap_model(model, rt, config.compile)
    logger = MetricsLogger(config, enabled=rt.master, start_step=step)

    # --- the training loop ----------------------------------------------------------------------
    model.train()
    while step < config.max_iters:
        stop_if_signalled()  # a Ctrl-C / SIGTERM whose exception Python swallowed (configurator.py)
        lr = lr_at(step, config.learning_rate, config.min_lr, config.warmup_iters, config.max_iters)
        set_lr(optimizer, lr)
        # every rank draws the same global batch, then takes its own micro-batches from it
        step_examples = [train[i] for i in batch_indices(len(train), global_batch, config.seed,
                                                         0 if config.overfit_batch else step)]
        n_tokens = sum(sum(1 for label in y if label != -100) for _, y in step_examples)  # N, over all ranks
        loss_sum = torch.zeros((), device=rt.device)
        for mb_examples, sync_context in micro_batches(model, step_examples, config.batch_size, rt):
            x, y = collate(mb_examples, tok.pad_id, rt.device)  # (B, T), (B, T)
            with sync_context:
                with rt.autocast:
                    logits, _ = model(x)  # (B, T, vocab)
                # sum of -log p over the supervised tokens of this micro-batch; 0 (not NaN) when there are none
                mb_loss_sum = supervised_loss_sum(logits, y)
                backward_share(mb_loss_sum, max(n_tokens, 1), rt)  # L = (1 / N) * sum over the whole step
            loss_sum += mb_loss_sum.detach()
        grad_norm = optimizer_step(model, optimizer, rt.scaler, config.grad_clip)
        train_loss = reduce_metrics({"loss": loss_sum}, max(n_tokens, 1))["loss"]  # the exact per-token mean of the step
        step += 1
        check_finite({"loss/train": train_loss, "grad_norm": grad_norm}, step, config.out_dir)

        if step % config.log_interval == 0 or step == config.max_iters:
            logger.log_step(step, {"loss/train": train_loss, "tokens_per_step": n_tokens}, lr, grad_norm, config.max_iters)
        if step % config.eval_interval == 0 or step == config.max_iters:
            val_metrics = {"loss/val": evaluate_loss(model, val, config.batch_size, tok.pad_id, rt)}
            check_finite(val_metrics, step, config.out_dir)
            logger.log(step, val_metrics, config.max_iters)
            if rt.master:
                save_checkpoint(config.out_dir, raw_model, config, step, tok.spec, optimizer, rt.scaler, stage="sft")
            logger.plot(os.path.join(config.out_dir, "loss.png"), ["loss/train", "loss/val", "lr"], "SFT")
        if rt.master and config.sample_interval and step % config.sample_interval == 0:
            print_samples(raw_model, tok, sample_prompts, config.max_new_tokens, step, rt)

    logger.finish()
    teardown(rt)


if __name__ == "__main__":
    run_cli(main)
