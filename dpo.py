"""
dpo.py -- Direct Preference Optimization (Rafailov et al. 2023): fit the policy to preference pairs
directly, with the frozen SFT model as the reference and no reward model or sampling in the loop.
Also IPO (Azar et al. 2023), conservative DPO (label smoothing, Mitchell 2023), an NLL term on the
chosen responses (RPO, Pang et al. 2024), and the reference-free losses SimPO (Meng et al. 2024) and
ORPO (Hong et al. 2024). KTO, which learns from single thumbs-up / thumbs-down examples instead of
pairs, is kto.py.

With the sequence log-probs log pi(y|x) = sum over response tokens (and end-of-text) of log pi(y_t|x, y_<t)
-- prompt and padding masked exactly as in sft.py --

    h = (log pi(y_c|x) - log pi_ref(y_c|x)) - (log pi(y_r|x) - log pi_ref(y_r|x))
    sigmoid (DPO):        L = -log sigma(beta * h)
    conservative DPO:     L = -(1 - eps) log sigma(beta * h) - eps log sigma(-beta * h)
    ipo:                  L = (h - 1 / (2 * beta))^2
    implicit rewards:     r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x))     (detached, for logging)
    + optional NLL term:  L += alpha * (-log pi(y_c|x) / |y_c|)   (rpo_alpha; RPO, Pang et al. 2024: keeps
                          the chosen responses likely while the margin grows; |y_c| counts end-of-text)

The reference-free losses load no reference model and compute no reference log-probs; their "rewards"
are built from the policy alone. |y| is the number of response tokens including end-of-text:

    simpo:  r(x, y) = beta / |y| * log pi(y|x)          L = -log sigma(r(x, y_c) - r(x, y_r) - gamma)
    orpo:   log P(y|x) = log pi(y|x) / |y|,  odds(y) = P / (1 - P)
            L = -log P(y_c|x) - lambda * log sigma(log odds(y_c) - log odds(y_r))
            (logged rewards: lambda * log P(y|x), TRL's convention; ORPO defines no implicit reward)

The reference log-probs are computed once, before training, for every pair the run will draw (the
reference is frozen, so recomputing them each step would only repeat the same forward passes; each step's
pairs are a function of seed and step, so which pairs those are is known up front); the frozen reference is
then freed.

Run (toy world on CPU, after sft.py; about 2 minutes):
    python dpo.py --config config/dpo_toy.py            # conservative DPO + RPO's NLL term
    python dpo.py --config config/dpo_simpo_toy.py      # SimPO
    python dpo.py --config config/dpo_orpo_toy.py       # ORPO
GPT-2-small on HH-RLHF (one GPU), or several with torchrun:
    python dpo.py --config config/dpo_gpt2_hh.py
    torchrun --standalone --nproc_per_node=8 dpo.py --config config/dpo_gpt2_hh.py

Deviations: none in the loss (the logged `loss` includes the NLL term when rpo_alpha > 0). An optional
early stop (max_chosen_drop) ends training when the median log-ratio of the held-out chosen responses,
log pi(y_c|x) - log pi_ref(y_c|x), falls below -max_chosen_drop: the known failure where DPO lowers the
likelihood of the chosen responses along with the rejected ones, taking probability to responses that
are in neither. Held-out preference accuracy keeps rising through that failure, so it cannot be the
signal (scripts/experiments.sh trains plain DPO past its best to show it). A median, because the pairs
whose labels are flipped have a bad "chosen" response that DPO rightly pushes down. ORPO starts here from
the SFT checkpoint like the others (its paper fine-tunes the base model: its NLL term is the SFT), so that
every method of the family starts from the same place; its length-normalised log-prob is clamped at
-1e-6, where the odds of a response would be infinite.
"""

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from checkpoint import load_checkpoint, load_model, prepare_out_dir, restore_training_state, save_checkpoint
from configurator import ConfigError, above, at_least, between, one_of, parse_config, run_cli, stop_if_signalled
from data.batches import collate, tokenize_pairs, tokenize_prompts
from data.formats import load_prefs, load_prompts
from data.toy.judge import check_prompts
from logger import MetricsLogger
from model import token_logprobs
from optim import configure_adamw, lr_at, optimizer_step, set_lr
from runtime import (accumulate, backward_share, batch_indices, check_finite, gather_lists, micro_batches, reduce_metrics, setup_runtime,
                     shard, teardown, wrap_model)
from sampling import generate_responses
from sft import build_example
from tokenizer import get_tokenizer


@dataclass
class DPOConfig:
    # I/O
    out_dir: str = "out/dpo"  # checkpoint, metrics.jsonl, curves.png
    resume: bool = False  # continue the run in out_dir from its ckpt.pt
    overwrite: bool = False  # allow replacing a run that already lives in out_dir
    init_from: str = "out/sft"  # the SFT checkpoint: the initial policy and the frozen reference
    # data
    train_data: str = "data/hh_rlhf/prefs_train.jsonl"  # JSONL {"prompt","chosen","rejected"}
    val_data: str = "data/hh_rlhf/prefs_val.jsonl"  # held-out pairs (loss, reward accuracy, early stop)
    skip_long: bool = False  # drop (and count) pairs longer than block_size instead of stopping with an error
    # loss
    beta: float = 0.1  # beta: strength of the implicit KL constraint to the reference
    loss_type: str = "sigmoid"  # 'sigmoid' (DPO), 'ipo', or the reference-free 'simpo' and 'orpo'
    label_smoothing: float = 0.0  # eps of conservative DPO: the assumed rate of flipped labels (sigmoid only)
    simpo_gamma: float = 0.5  # gamma of SimPO: the target margin between length-normalised rewards (simpo only)
    orpo_lambda: float = 0.1  # lambda of ORPO: weight of the odds-ratio term beside the chosen NLL (orpo only)
    rpo_alpha: float = 0.0  # weight of the per-token NLL of the chosen response added to the loss (RPO; 0 = off)
    # optimisation
    batch_size: int = 8  # pairs per micro-batch per process
    grad_accum_steps: int = 4  # micro-batches per optimizer step (per process)
    max_iters: int = 1000  # optimizer steps
    learning_rate: float = 5e-7  # peak AdamW learning rate
    min_lr: float = 5e-7  # learning rate at the end of the cosine decay (= learning_rate: constant)
    warmup_iters: int = 50  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay on 2-D weights
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)
    dropout: float = 0.0  # dropout while training (the reference log-probs are always without)
    overfit_batch: bool = False  # debugging: train on the same first batch every step
    # evaluation, early stopping and logging
    eval_interval: int = 100  # steps between validation metrics + checkpoint
    eval_max_examples: int = 1000  # validation pairs used (0 = all)
    max_chosen_drop: float = 0.0  # stop when the held-out chosen responses' median log-ratio log pi - log pi_ref
    # falls below -max_chosen_drop nats (0 = never): DPO is then pushing probability off the good answers too;
    # the checkpoint kept is the last one before that
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


# the meaningful ranges of DPO's own settings (the shared ones are in configurator.RANGES)
RANGES = {"beta": above(0), "loss_type": one_of("sigmoid", "ipo", "simpo", "orpo"), "label_smoothing": between(0, 0.5),
          "simpo_gamma": at_least(0), "orpo_lambda": at_least(0), "rpo_alpha": at_least(0), "max_chosen_drop": at_least(0)}
REFERENCE_FREE = ("simpo", "orpo")  # losses that need no reference model
LOSS_NAMES = {"sigmoid": "DPO", "ipo": "IPO", "simpo": "SimPO", "orpo": "ORPO"}  # for titles


def check_loss_settings(config):
    """Settings that mean nothing for the chosen loss are an error, not silently ignored."""
    if config.label_smoothing and config.loss_type != "sigmoid":
        raise ConfigError(f"label_smoothing = {config.label_smoothing}: conservative DPO's eps applies to "
                          f"loss_type 'sigmoid' only, not {config.loss_type!r}")
    if config.max_chosen_drop and config.loss_type in REFERENCE_FREE:
        raise ConfigError(f"max_chosen_drop = {config.max_chosen_drop}: the early stop compares with the reference "
                          f"model, which loss_type {config.loss_type!r} does not load; set it to 0")
    if config.rpo_alpha and config.loss_type == "orpo":
        raise ConfigError(f"rpo_alpha = {config.rpo_alpha}: ORPO's loss already has the NLL of the chosen "
                          f"responses (its weight is 1); set rpo_alpha to 0")


# -----------------------------------------------------------------------------
# learning logic

def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta,
             loss_type="sigmoid", label_smoothing=0.0):
    """Per-pair DPO / conservative DPO / IPO losses and the detached implicit rewards; all inputs (B,)."""
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # log pi(y_c|x) - log pi_ref(y_c|x)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    h = chosen_logratios - rejected_logratios  # (B,)
    if loss_type == "sigmoid":
        # -(1 - eps) log sigma(beta h) - eps log sigma(-beta h)   (eps = 0: Rafailov et al. 2023, eq. 7)
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        # (h - 1 / (2 beta))^2   (Azar et al. 2023, eq. 17)
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"loss_type {loss_type!r}: expected 'sigmoid' or 'ipo'")
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses, chosen_rewards, rejected_rewards


def simpo_loss(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths, beta, gamma):
    """Per-pair SimPO losses and its (detached) rewards; inputs (B,), lengths |y| counting end-of-text."""
    chosen_rewards = beta * chosen_logps / chosen_lengths  # r(x, y) = beta / |y| log pi(y|x)
    rejected_rewards = beta * rejected_logps / rejected_lengths
    # -log sigma(r(x, y_c) - r(x, y_r) - gamma)   (Meng et al. 2024, eq. 6)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def log1mexp(x):
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012): log(-expm1(x)) near 0, where
    1 - exp(x) cancels, and log1p(-exp(x)) further out, where exp(x) is tiny."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths, lam):
    """Per-pair ORPO losses (the chosen NLL included) and lambda * log P(y|x) as the logged rewards; inputs
    (B,), lengths |y| counting end-of-text."""
    # log P(y|x) = log pi(y|x) / |y|, kept below 0: a response of probability 1 has infinite odds
    chosen_logp = (chosen_logps / chosen_lengths).clamp(max=-1e-6)
    rejected_logp = (rejected_logps / rejected_lengths).clamp(max=-1e-6)
    # log odds(y) = log P - log(1 - P), in log space
    log_odds_ratio = (chosen_logp - log1mexp(chosen_logp)) - (rejected_logp - log1mexp(rejected_logp))
    # -log P(y_c|x) - lambda log sigma(log odds(y_c) - log odds(y_r))   (Hong et al. 2024, eqs. 6-7)
    losses = -chosen_logp - lam * F.logsigmoid(log_odds_ratio)
    return losses, lam * chosen_logp.detach(), lam * rejected_logp.detach()


def preference_losses(config, chosen_logps, rejected_logps, ref_logps, lengths):
    """The configured loss: per-pair losses (B,) and the detached rewards of chosen and rejected (B,), (B,).
    ref_logps (B, 2) [chosen, rejected] log pi_ref (None for the reference-free losses); lengths (B, 2) |y|."""
    if config.loss_type == "simpo":
        return simpo_loss(chosen_logps, rejected_logps, lengths[:, 0], lengths[:, 1], config.beta, config.simpo_gamma)
    if config.loss_type == "orpo":
        return orpo_loss(chosen_logps, rejected_logps, lengths[:, 0], lengths[:, 1], config.orpo_lambda)
    return dpo_loss(chosen_logps, rejected_logps, ref_logps[:, 0], ref_logps[:, 1], config.beta, config.loss_type,
                    config.label_smoothing)


def sequence_logps(logits, labels):
    """Sum of log pi(label_t | ...) over the supervised positions (labels != -100): logits (B, T, vocab),
    labels (B, T) -> (B,). The prompt and the padding contribute nothing."""
    mask = labels != -100
    logps = token_logprobs(logits, labels.clamp(min=0))  # (B, T); the clamp only makes ignored ids valid indices
    return (logps * mask).sum(dim=1)


def pair_examples(pairs, eot_id):
    """Tokenised pairs (data.batches.tokenize_pairs) -> [(chosen, rejected)], each (inputs, labels) with
    exactly SFT's loss mask (sft.build_example), so that sequence_logps sums over the response tokens and
    end-of-text only."""
    return [(build_example(prompt, chosen, eot_id), build_example(prompt, rejected, eot_id))
            for prompt, chosen, rejected in pairs]


def response_lengths(pairs, device):
    """|y_c| and |y_r| of every pair, (N, 2): the supervised positions, i.e. the response tokens and end-of-text."""
    return torch.tensor([[sum(t != -100 for t in c[1]), sum(t != -100 for t in r[1])] for c, r in pairs],
                        dtype=torch.float, device=device)


def concatenated_logps(model, pairs, pad_id, rt):
    """Chosen and rejected in one forward pass: (chosen logps (B,), rejected logps (B,))."""
    x, y = collate([c for c, _ in pairs] + [r for _, r in pairs], pad_id, rt.device)  # (2B, T)
    with rt.autocast:
        logits, _ = model(x)
    logps = sequence_logps(logits.float(), y)  # (2B,)
    return logps[:len(pairs)], logps[len(pairs):]


def pair_metrics(losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps):
    """Sums over a batch's pairs of the logged quantities (TRL's names), later divided by the number of pairs."""
    return {"loss": losses.detach().sum(), "rewards/chosen": chosen_rewards.sum(), "rewards/rejected": rejected_rewards.sum(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().sum(),
            "rewards/margins": (chosen_rewards - rejected_rewards).sum(),
            "logps/chosen": chosen_logps.detach().sum(), "logps/rejected": rejected_logps.detach().sum()}


@torch.no_grad()
def reference_logps(ref_model, pairs, pad_id, rt, batch_size, needed=None):
    """log pi_ref(y_c|x) and log pi_ref(y_r|x): (N, 2), [chosen, rejected], of every pair, or only of the pairs
    whose indices are in `needed` (the others NaN, so a pair read by mistake makes the loss NaN, which stops
    the run); batch_size pairs per forward pass (the training micro-batch: at GPT-2 size the logits of
    2 x 64 sequences of 1024 tokens alone would be 26 GB)."""
    order = sorted(needed) if needed is not None else range(len(pairs))
    out = torch.full((len(pairs), 2), math.nan, device=rt.device)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        out[idx] = torch.stack(concatenated_logps(ref_model, [pairs[i] for i in idx], pad_id, rt), dim=1)
    return out


# -----------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def evaluate_pairs(model, val, ref_val, val_lengths, config, pad_id, rt):
    """Held-out means of the logged quantities (as val/...), and, with a reference, the median log-ratio of the
    chosen responses (the early-stop signal: a median, because the pairs whose labels are flipped have a bad
    "chosen" response that DPO rightly pushes down, and a few of those move a mean a long way). Split across ranks."""
    model.eval()
    sums, chosen_logratios = {}, []
    indices = shard(list(range(len(val))), rt)
    for i in range(0, len(indices), config.batch_size):
        idx = indices[i:i + config.batch_size]
        c, r = concatenated_logps(model, [val[j] for j in idx], pad_id, rt)  # (B,), (B,)
        ref = ref_val[idx] if ref_val is not None else None  # (B, 2)
        out = preference_losses(config, c, r, ref, val_lengths[idx])
        accumulate(sums, pair_metrics(*out, c, r))
        if ref is not None:
            chosen_logratios += (c.float() - ref[:, 0]).tolist()
    model.train()
    metrics = {f"val/{k}": v for k, v in reduce_metrics(sums, len(val)).items()}
    if ref_val is not None:
        metrics["val/chosen_logratio_median"] = float(np.median(gather_lists(chosen_logratios, rt)))
    return metrics


def gold_eval(policy, tok, prompts, max_new_tokens, rt):
    """The toy world's gold judge on one response per held-out prompt, sampled at temperature 1."""
    from data.toy.judge import eval_metrics, judge
    policy.eval()
    responses = generate_responses(policy, tok, prompts, max_new_tokens, temperature=1.0, device=rt.device,
                                   autocast=rt.autocast)
    policy.train()
    return eval_metrics([judge(p, text, ended) for p, (text, ended) in zip(prompts, responses)])


# -----------------------------------------------------------------------------

def main():
    config = parse_config(DPOConfig, ranges=RANGES)
    check_loss_settings(config)
    rt = setup_runtime(config.device, config.dtype, config.seed)
    uses_reference = config.loss_type not in REFERENCE_FREE

    # --- the policy (trained) and the reference (frozen, unless the loss is reference-free), both from SFT --
    resume_ckpt = load_checkpoint(config.out_dir, stages=("dpo",), key="out_dir") if config.resume else None
    policy, tok_name, _ = load_model(config.init_from, dropout=config.dropout, key="init_from")
    ref_model = load_model(config.init_from)[0] if uses_reference else None
    if resume_ckpt is not None:  # the policy of the run being continued
        policy.load_state_dict(resume_ckpt["model"])
    tok = get_tokenizer(tok_name)

    # --- data, validated before anything is written ------------------------------------------------------
    def pairs(path):
        tokenized, n_identical, n_long = tokenize_pairs(load_prefs(path), tok, policy.config.block_size, path,
                                                        config.skip_long, shifted=True)
        return pair_examples(tokenized, tok.eot_id), n_identical, n_long
    train, n_identical, n_long = pairs(config.train_data)
    val = pairs(config.val_data)[0][:config.eval_max_examples or None]
    train_lengths, val_lengths = response_lengths(train, rt.device), response_lengths(val, rt.device)  # (N, 2) |y_c|, |y_r|
    # the gold evaluation's prompts: each must fit with room for a response (its samples stop at max_new_tokens or
    # at the end of the context window, whichever comes first)
    eval_records = check_prompts(tokenize_prompts(load_prompts(config.eval_prompts), tok, policy.config.block_size, 1,
                                                  config.eval_prompts, config.skip_long)[0],
                                 config.eval_prompts) if config.toy_eval else []
    eval_prompts = [r["prompt"] for r in eval_records]
    global_batch = config.batch_size * config.grad_accum_steps * rt.world_size
    def step_pairs(step):  # the global batch of optimizer step `step`: a function of seed and step alone
        return batch_indices(len(train), global_batch, config.seed, 0 if config.overfit_batch else step)
    if rt.master:
        prepare_out_dir(config.out_dir, config.resume, config.overwrite, inputs={
            "init_from": config.init_from, "train_data": config.train_data, "val_data": config.val_data,
            "eval_prompts": config.eval_prompts if config.toy_eval else None})
        print(f"dpo: {len(train)} train pairs (skipped: {n_identical} identical, {n_long} too long), {len(val)} val pairs; "
              f"{global_batch} pairs per step = {config.batch_size} x {config.grad_accum_steps} x {rt.world_size} processes; "
              f"{config.max_iters} steps; loss {config.loss_type}, beta {config.beta}, label smoothing {config.label_smoothing}"
              + ("" if uses_reference else "; reference-free: no reference model"))

    # --- the reference log-probs, once, of the pairs this run can draw (every rank computes them all: a step's
    # pairs are batch_indices(seed, step), known up front; ~1700 of the toy world's 8000 in its 60 steps) ---
    ref_train = ref_val = None
    if uses_reference:
        ref_model.to(rt.device).eval()
        drawn = {i for s in range(config.max_iters) for i in step_pairs(s)}
        ref_train = reference_logps(ref_model, train, tok.pad_id, rt, config.batch_size, needed=drawn)
        ref_val = reference_logps(ref_model, val, tok.pad_id, rt, config.batch_size)
        del ref_model

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
        indices = step_pairs(step)
        sums = {}
        for idx, sync_context in micro_batches(model, indices, config.batch_size, rt):
            with sync_context:
                chosen_logps, rejected_logps = concatenated_logps(model, [train[i] for i in idx], tok.pad_id, rt)  # (B,), (B,)
                ref = ref_train[idx] if uses_reference else None  # (B, 2)
                losses, chosen_rewards, rejected_rewards = preference_losses(config, chosen_logps, rejected_logps, ref,
                                                                             train_lengths[idx])
                if config.rpo_alpha:
                    # + alpha * (-log pi(y_c|x) / |y_c|): keeps the chosen responses likely (Pang et al. 2024)
                    losses = losses - config.rpo_alpha * chosen_logps / train_lengths[idx, 0]
                backward_share(losses.sum(), global_batch, rt)  # the mean over every pair of the step
            accumulate(sums, pair_metrics(losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps))
        grad_norm = optimizer_step(model, optimizer, rt.scaler, config.grad_clip)
        metrics = reduce_metrics(sums, global_batch)
        step += 1
        check_finite({**metrics, "grad_norm": grad_norm}, step, config.out_dir)
        if step % config.log_interval == 0 or step == config.max_iters:
            logger.log_step(step, metrics, lr, grad_norm, config.max_iters)
        if step % config.eval_interval == 0 or step == config.max_iters:
            val_metrics = evaluate_pairs(model, val, ref_val, val_lengths, config, tok.pad_id, rt)
            if config.toy_eval and rt.master:
                val_metrics.update(gold_eval(policy, tok, eval_prompts, config.max_new_tokens, rt))
            check_finite(val_metrics, step, config.out_dir)
            logger.log(step, val_metrics, config.max_iters)
            logger.plot(os.path.join(config.out_dir, "curves.png"),
                        ["loss", "val/loss", "rewards/margins", "val/rewards/accuracies", "logps/chosen", "logps/rejected",
                         "eval/gold_score"], LOSS_NAMES[config.loss_type])
            chosen_logratio = val_metrics.get("val/chosen_logratio_median")  # median of log pi(y_c|x) - log pi_ref(y_c|x)
            if config.max_chosen_drop and chosen_logratio < -config.max_chosen_drop:
                if step == config.eval_interval:
                    raise ValueError(f"dpo: the held-out chosen log-ratio fell to {chosen_logratio:.3f} by the first "
                                     f"evaluation (step {step}), before any checkpoint: lower learning_rate or eval_interval")
                if rt.master:
                    print(f"dpo: early stop at step {step}: held-out chosen log-ratio {chosen_logratio:.3f} < "
                          f"-{config.max_chosen_drop}; keeping the checkpoint of the previous evaluation")
                break
            if rt.master:
                save_checkpoint(config.out_dir, policy, config, step, tok.spec, optimizer, rt.scaler, stage="dpo",
                                extra={"val_metrics": val_metrics})
    logger.finish()
    teardown(rt)


if __name__ == "__main__":
    run_cli(main)
