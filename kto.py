"""
kto.py -- Kahneman-Tversky Optimization (Ethayarajh et al. 2024): align the policy from single completions
labelled desirable or undesirable (a thumbs-up or thumbs-down), with no second response to compare each
with. The frozen SFT model is the reference, as in DPO.

With the sequence log-probs of dpo.py (response tokens and end-of-text; prompt and padding masked):

    r(x, y) = log pi(y|x) - log pi_ref(y|x)                           the implied reward, in nats
    z_ref   = max(0, mean over the batch of log pi(y'|x) - log pi_ref(y'|x)),   detached
              (x, y') mismatched: each prompt of the micro-batch with the completion of another example, an
              estimate of KL(pi || pi_ref); the reference point against which a completion counts as a gain
              or a loss)
    desirable:    L = lambda_D (1 - sigma(beta (r(x, y) - z_ref)))
    undesirable:  L = lambda_U (1 - sigma(beta (z_ref - r(x, y))))
    lambda_D, lambda_U: the paper recommends lambda_D n_D / (lambda_U n_U) in [1, 4/3] (n_D, n_U the number of
              desirable and undesirable examples); by default lambda_U = 1 and lambda_D = n_U / n_D, the ratio 1

Data (train_data, val_data): unpaired feedback {"prompt", "completion", "label": true|false} (TRL's
unpaired format), or preference pairs {"prompt", "chosen", "rejected"} split into one desirable (chosen) and
one undesirable (rejected) example each: the pairing is thrown away. Which one a file is, its first record
says. Why a file of its own and not a loss_type of dpo.py: the unit of data is one completion, not a pair,
and the reference point needs a second forward pass on mismatched completions, so its data and its loop
differ from DPO's everywhere; what is the same (sequence log-probs, the gold evaluation) is imported.

Run (toy world on CPU, after sft.py; about 2 minutes):
    python kto.py --config config/kto_toy.py
GPT-2-small on HH-RLHF (one GPU), or several with torchrun:
    python kto.py --config config/kto_gpt2_hh.py
    torchrun --standalone --nproc_per_node=8 kto.py --config config/kto_gpt2_hh.py

Deviations: the mismatched completion is the next example's in the micro-batch (TRL shifts completions in
the same way), skipping those that answer the same prompt (the two halves of a split pair), and truncated
where it and the prompt would not fit block_size; under DDP z_ref is the mean over every rank's micro-batch
in training, and over each rank's own batch in the held-out evaluation. The reference log-probs are computed in the loop (the mismatched pairs change with
each batch), so the reference model stays in memory, unlike dpo.py.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from checkpoint import load_checkpoint, load_model, prepare_out_dir, restore_training_state, save_checkpoint
from configurator import above, at_least, parse_config, run_cli, stop_if_signalled
from data.batches import check_length, collate, encode, tokenize_pairs, tokenize_prompts
from data.formats import DataError, format_prompt, format_response, load_prefs, load_prompts, load_unpaired, read_jsonl, where_is
from data.toy.judge import check_prompts
from dpo import gold_eval, sequence_logps
from logger import MetricsLogger
from optim import configure_adamw, lr_at, optimizer_step, set_lr
from runtime import (accumulate, all_reduce_sum, backward_share, batch_indices, check_finite, gather_lists, micro_batches,
                     reduce_metrics, setup_runtime, shard, teardown, wrap_model)
from sft import build_example
from tokenizer import get_tokenizer


@dataclass
class KTOConfig:
    # I/O
    out_dir: str = "out/kto"  # checkpoint, metrics.jsonl, curves.png
    resume: bool = False  # continue the run in out_dir from its ckpt.pt
    overwrite: bool = False  # allow replacing a run that already lives in out_dir
    init_from: str = "out/sft"  # the SFT checkpoint: the initial policy and the frozen reference
    # data
    train_data: str = "data/hh_rlhf/prefs_train.jsonl"  # JSONL: unpaired {"prompt","completion","label"} or pairs
    val_data: str = "data/hh_rlhf/prefs_val.jsonl"  # held-out examples, in either format
    skip_long: bool = False  # drop (and count) examples longer than block_size instead of stopping with an error
    # loss
    beta: float = 0.1  # beta: strength of the implicit KL constraint to the reference
    desirable_weight: float = 0.0  # lambda_D (0: from the class balance, lambda_D n_D = lambda_U n_U)
    undesirable_weight: float = 1.0  # lambda_U
    # optimisation
    batch_size: int = 8  # examples per micro-batch per process (>= 2: the reference point pairs each with the next)
    grad_accum_steps: int = 4  # micro-batches per optimizer step (per process)
    max_iters: int = 1000  # optimizer steps
    learning_rate: float = 5e-7  # peak AdamW learning rate
    min_lr: float = 5e-7  # learning rate at the end of the cosine decay (= learning_rate: constant)
    warmup_iters: int = 50  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay on 2-D weights
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)
    dropout: float = 0.0  # dropout while training (the reference is always without)
    # evaluation and logging
    eval_interval: int = 100  # steps between validation metrics + checkpoint
    eval_max_examples: int = 1000  # validation examples used (0 = all)
    log_interval: int = 10  # steps between training lines
    toy_eval: bool = False  # the data is the toy world: sample eval prompts and score them with the gold judge
    eval_prompts: str = "data/toy/eval_prompts.jsonl"  # held-out toy prompts for the gold score
    max_new_tokens: int = 96  # response length limit when sampling for the gold score
    wandb_project: str = None  # log to Weights & Biases under this project (pip install wandb)
    # system
    device: str = "auto"  # 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'
    dtype: str = "auto"  # 'auto' (bf16, or fp16 on GPUs without bf16), 'float32', 'bfloat16', 'float16'
    compile: bool = False  # torch.compile the policy
    seed: int = 1337


# the meaningful ranges of KTO's own settings (the shared ones are in configurator.RANGES)
RANGES = {"beta": above(0), "desirable_weight": at_least(0), "undesirable_weight": above(0),
          "batch_size": at_least(2)}  # the reference point pairs each example with another


# -----------------------------------------------------------------------------
# learning logic

def kto_loss(policy_logps, ref_logps, desirable, z_ref, beta, desirable_weight, undesirable_weight):
    """Per-example KTO losses and the detached implicit rewards beta * r; inputs (B,), desirable (B,) bool,
    z_ref a detached scalar."""
    logratios = policy_logps - ref_logps  # r(x, y) = log pi(y|x) - log pi_ref(y|x)
    # lambda_D (1 - sigma(beta (r - z_ref))) for desirable, lambda_U (1 - sigma(beta (z_ref - r))) for undesirable
    losses = torch.where(desirable, desirable_weight * (1 - F.sigmoid(beta * (logratios - z_ref))),
                         undesirable_weight * (1 - F.sigmoid(beta * (z_ref - logratios))))
    return losses, beta * logratios.detach()


def reference_point(policy_mismatched_logps, ref_mismatched_logps, across_ranks):
    """z_ref = max(0, mean of log pi(y'|x) - log pi_ref(y'|x)) over the mismatched pairs (of every rank, with
    across_ranks), detached: the policy is not trained to move it."""
    logratios = (policy_mismatched_logps - ref_mismatched_logps).detach()
    total = torch.stack([logratios.sum(), logratios.new_tensor(float(len(logratios)))])
    if across_ranks:
        total = all_reduce_sum(total)
    return (total[0] / total[1]).clamp(min=0)


def mismatched_examples(batch, eot_id, block_size):
    """Each example's prompt with the completion of the next example (cyclically) that answers another prompt,
    as (inputs, labels): with prompts a, a, b, c -> (a, completion 2), (a, completion 2), (b, completion 3),
    (c, completion 0). The chosen and rejected halves of a pair share a prompt, so the very next completion
    could answer it; a batch with a single prompt has no mismatched pair and uses the next completion anyway.
    A completion is cut where prompt + completion + end-of-text would not fit block_size + 1 tokens."""
    out = []
    for i, (prompt, _) in enumerate(batch):
        j = next((k % len(batch) for k in range(i + 1, i + len(batch)) if batch[k % len(batch)][0] != prompt),
                 (i + 1) % len(batch))
        out.append(build_example(prompt, batch[j][1][:block_size - len(prompt)], eot_id))
    return out


def class_weights(n_desirable, n_undesirable, desirable_weight, undesirable_weight):
    """(lambda_D, lambda_U): desirable_weight 0 sets lambda_D = lambda_U n_U / n_D, so that both classes carry
    the same total weight (lambda_D n_D / (lambda_U n_U) = 1, the low end of the paper's [1, 4/3])."""
    if desirable_weight == 0:  # one class alone (no balance to keep): weight 1
        desirable_weight = undesirable_weight * n_undesirable / n_desirable if n_desirable and n_undesirable else 1.0
    return desirable_weight, undesirable_weight


def batch_logps(model, examples, pad_id, rt):
    """Sequence log-probs of (inputs, labels) examples in one forward pass: (B,)."""
    x, y = collate(examples, pad_id, rt.device)  # (B, T)
    with rt.autocast:
        logits, _ = model(x)
    return sequence_logps(logits.float(), y)


def step_terms(model, ref_model, batch, desirable, config, weights, tok, block_size, rt, across_ranks=True):
    """The loss terms of one micro-batch of (prompt_ids, completion_ids): per-example losses (B,), rewards (B,),
    policy log-probs (B,) and z_ref. The mismatched forward passes carry no gradient: z_ref is detached."""
    matched = [build_example(p, c, tok.eot_id) for p, c in batch]
    mismatched = mismatched_examples(batch, tok.eot_id, block_size)
    policy_logps = batch_logps(model, matched, tok.pad_id, rt)  # (B,)
    with torch.no_grad():  # the reference on the same batches as the policy: at the start r is exactly 0
        ref_logps = batch_logps(ref_model, matched, tok.pad_id, rt)  # (B,)
        policy_mismatched = batch_logps(model, mismatched, tok.pad_id, rt)  # (B,)
        ref_mismatched = batch_logps(ref_model, mismatched, tok.pad_id, rt)  # (B,)
    z_ref = reference_point(policy_mismatched, ref_mismatched, across_ranks)
    losses, rewards = kto_loss(policy_logps, ref_logps, desirable, z_ref, config.beta, *weights)
    return losses, rewards, policy_logps, z_ref


def example_metrics(losses, rewards, policy_logps, desirable, z_ref):
    """Sums over a batch of the logged quantities (TRL's names), and the counts they are later divided by."""
    d, u = desirable.float(), (~desirable).float()
    return {"loss": losses.detach().sum(), "rewards/chosen": (rewards * d).sum(), "rewards/rejected": (rewards * u).sum(),
            "logps/chosen": (policy_logps.detach() * d).sum(), "logps/rejected": (policy_logps.detach() * u).sum(),
            "kl": z_ref * len(losses), "n": losses.new_tensor(float(len(losses))), "n_desirable": d.sum(), "n_undesirable": u.sum()}


def mean_metrics(sums):
    """Means of the summed metrics over all ranks: rewards/chosen over the desirable examples, rewards/rejected
    over the undesirable ones, the rest over every example; and rewards/margins, their difference."""
    totals = reduce_metrics(sums)
    n, n_d, n_u = totals.pop("n"), totals.pop("n_desirable"), totals.pop("n_undesirable")
    out = {k: v / {"chosen": max(n_d, 1), "rejected": max(n_u, 1)}.get(k.split("/")[-1], n) for k, v in totals.items()}
    out["rewards/margins"] = out["rewards/chosen"] - out["rewards/rejected"]
    return out


# -----------------------------------------------------------------------------
# data

def load_examples(path, tok, block_size, skip_long):
    """A KTO data file -> ([(prompt_ids, completion_ids)], desirable [bool], whether the examples are split pairs,
    what was skipped), in file order. Unpaired feedback if the first record has a "label"; else preference
    pairs, each split into its chosen (desirable) and rejected (undesirable) completion, one after the other."""
    if "label" in read_jsonl(path)[0]:
        examples, labels, n_long = [], [], 0
        for i, r in enumerate(load_unpaired(path)):
            where = where_is(path, r, i)
            prompt, completion = encode(tok, format_prompt(r["prompt"]), where), encode(tok, format_response(r["completion"]), where)
            if check_length(len(prompt) + len(completion) + 1, block_size, True, where, "example", skip_long):
                examples.append((prompt, completion))
                labels.append(r["label"])
            else:
                n_long += 1
        if not examples:
            raise DataError(f"{path}: every example is longer than block_size {block_size}")
        return examples, labels, False, f"{n_long} too long"
    pairs, n_identical, n_long = tokenize_pairs(load_prefs(path), tok, block_size, path, skip_long, shifted=True)
    examples = [example for p, c, r in pairs for example in ((p, c), (p, r))]
    return examples, [True, False] * len(pairs), True, f"{n_identical} identical pairs, {n_long} too long"


# -----------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def evaluate_examples(model, ref_model, val, val_desirable, val_paired, config, weights, tok, block_size, rt):
    """Held-out means of the logged quantities, as val/...; split across ranks two examples at a time (a split
    pair stays together), batch_size at a time (each batch its own reference point, as in training). With
    split pairs as the held-out data, also val/rewards/accuracies: the fraction of pairs whose chosen
    completion gets the higher reward, comparable with dpo.py's."""
    model.eval()
    sums, rewards_of = {}, []
    indices = [j for first in shard(list(range(0, len(val), 2)), rt) for j in (first, first + 1) if j < len(val)]
    batches = [indices[i:i + config.batch_size] for i in range(0, len(indices), config.batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:  # one example alone has no mismatched partner
        batches[-2] += batches.pop()
    for idx in batches:  # each rank its own batches: z_ref per local batch (the ranks' batch counts may differ)
        desirable = torch.tensor([val_desirable[j] for j in idx], device=rt.device)
        out = step_terms(model, ref_model, [val[j] for j in idx], desirable, config, weights, tok, block_size, rt,
                         across_ranks=False)
        accumulate(sums, example_metrics(*out[:3], desirable, out[3]))
        rewards_of += list(zip(idx, out[1].tolist()))
    model.train()
    metrics = {f"val/{k}": v for k, v in mean_metrics(sums).items()}
    if val_paired:  # examples 2i and 2i + 1: the chosen and rejected completions of pair i
        reward = dict(gather_lists(rewards_of, rt))
        metrics["val/rewards/accuracies"] = float(np.mean([reward[i] > reward[i + 1] for i in range(0, len(val) - 1, 2)]))
    return metrics


# -----------------------------------------------------------------------------

def main():
    config = parse_config(KTOConfig, ranges=RANGES)
    rt = setup_runtime(config.device, config.dtype, config.seed)

    # --- the policy (trained) and the reference (frozen), both from SFT ----------------------------------
    resume_ckpt = load_checkpoint(config.out_dir, stages=("kto",), key="out_dir") if config.resume else None
    policy, tok_name, _ = load_model(config.init_from, dropout=config.dropout, key="init_from")
    ref_model, _, _ = load_model(config.init_from)
    if resume_ckpt is not None:  # the policy of the run being continued
        policy.load_state_dict(resume_ckpt["model"])
    tok = get_tokenizer(tok_name)
    block_size = policy.config.block_size

    # --- data, validated before anything is written ------------------------------------------------------
    train, train_desirable, _, train_skipped = load_examples(config.train_data, tok, block_size, config.skip_long)
    val, val_desirable, val_paired, _ = load_examples(config.val_data, tok, block_size, config.skip_long)
    val, val_desirable = val[:config.eval_max_examples or None], val_desirable[:config.eval_max_examples or None]
    n_desirable = sum(train_desirable)
    weights = class_weights(n_desirable, len(train) - n_desirable, config.desirable_weight, config.undesirable_weight)
    train_desirable = torch.tensor(train_desirable, device=rt.device)  # (N,) bool
    eval_records = check_prompts(tokenize_prompts(load_prompts(config.eval_prompts), tok, block_size, 1,
                                                  config.eval_prompts, config.skip_long)[0],
                                 config.eval_prompts) if config.toy_eval else []
    eval_prompts = [r["prompt"] for r in eval_records]
    global_batch = config.batch_size * config.grad_accum_steps * rt.world_size
    if rt.master:
        prepare_out_dir(config.out_dir, config.resume, config.overwrite, inputs={
            "init_from": config.init_from, "train_data": config.train_data, "val_data": config.val_data,
            "eval_prompts": config.eval_prompts if config.toy_eval else None})
        print(f"kto: {len(train)} train examples ({n_desirable} desirable, {len(train) - n_desirable} undesirable; "
              f"skipped: {train_skipped}), {len(val)} val examples; lambda_D {weights[0]:.3g}, lambda_U {weights[1]:.3g} "
              f"(lambda_D n_D / lambda_U n_U = {weights[0] * n_desirable / max(weights[1] * (len(train) - n_desirable), 1e-9):.3g}); "
              f"{global_batch} examples per step = {config.batch_size} x {config.grad_accum_steps} x {rt.world_size} "
              f"processes; {config.max_iters} steps; beta {config.beta}")

    ref_model.to(rt.device).eval()
    policy.to(rt.device)
    optimizer = configure_adamw(policy, config.learning_rate, config.weight_decay, (config.beta1, config.beta2), rt.device_type)
    step = restore_training_state(resume_ckpt, optimizer, rt.scaler) if resume_ckpt is not None else 0
    del resume_ckpt
    model = wrap_model(policy, rt, config.compile)
    logger = MetricsLogger(config, enabled=rt.master, start_step=step)

    # --- the training loop -----------------------------------------------------------------------------------
    model.train()
    while step < config.max_iters:
        stop_if_signalled()  # a Ctrl-C / SIGTERM whose exception Python swallowed (configurator.py)
        lr = lr_at(step, config.learning_rate, config.min_lr, config.warmup_iters, config.max_iters)
        set_lr(optimizer, lr)
        indices = batch_indices(len(train), global_batch, config.seed, step)
        sums = {}
        for idx, sync_context in micro_batches(model, indices, config.batch_size, rt):
            desirable = train_desirable[idx]  # (B,)
            with sync_context:
                losses, rewards, policy_logps, z_ref = step_terms(model, ref_model, [train[i] for i in idx], desirable,
                                                                  config, weights, tok, block_size, rt)
                backward_share(losses.sum(), global_batch, rt)  # the mean over every example of the step
            accumulate(sums, example_metrics(losses, rewards, policy_logps, desirable, z_ref))
        grad_norm = optimizer_step(model, optimizer, rt.scaler, config.grad_clip)
        metrics = mean_metrics(sums)
        step += 1
        check_finite({**metrics, "grad_norm": grad_norm}, step, config.out_dir)
        if step % config.log_interval == 0 or step == config.max_iters:
            logger.log_step(step, metrics, lr, grad_norm, config.max_iters)
        if step % config.eval_interval == 0 or step == config.max_iters:
            val_metrics = evaluate_examples(model, ref_model, val, val_desirable, val_paired, config, weights, tok, block_size, rt)
            if config.toy_eval and rt.master:
                val_metrics.update(gold_eval(policy, tok, eval_prompts, config.max_new_tokens, rt))
            check_finite(val_metrics, step, config.out_dir)
            logger.log(step, val_metrics, config.max_iters)
            logger.plot(os.path.join(config.out_dir, "curves.png"),
                        ["loss", "val/loss", "rewards/margins", "kl", "logps/chosen", "logps/rejected", "eval/gold_score"],
                        "KTO")
            if rt.master:
                save_checkpoint(config.out_dir, policy, config, step, tok.spec, optimizer, rt.scaler, stage="kto",
                                extra={"val_metrics": val_metrics})
    logger.finish()
    teardown(rt)


if __name__ == "__main__":
    run_cli(main)
