"""
ppo.py -- RLHF with PPO: fine-tune the SFT policy to maximise a learned reward while a per-token KL
penalty keeps it near the SFT model (Ziegler et al. 2019, "Fine-Tuning Language Models from Human
Preferences"; Stiennon et al. 2020; Ouyang et al. 2022, InstructGPT), with the PPO clipped objective
(Schulman et al. 2017) and GAE (Schulman et al. 2016).

One iteration:
  1. rollout: sample a response to each prompt from the policy (temperature tau, KV cache, left-padded
     prompts); keep log pi(a_t|s_t) under tau, the frozen reference's log-probs, the value model's V(s_t),
     and the frozen, normalised reward model's score at the response's end-of-text token (a response
     that never ends within max_new_tokens gets the score minus missing_eos_penalty);
  2. rewards: r_t = -beta * (log pi(a_t|s_t) - log pi_ref(a_t|s_t)) on every response token, plus the
     score on the last one (Ziegler et al. eq. 2, spread over tokens as in their code);
  3. GAE advantages and returns over the response tokens, advantages whitened over the batch;
  4. ppo_epochs passes over shuffled minibatches of the clipped policy loss + vf_coef * the clipped
     value loss (- ent_coef * entropy), with gradient clipping.
Every position after a response's end-of-text is masked everywhere.

Models: the policy (from SFT), a frozen reference (the SFT weights), the frozen reward model, and a
value model with a scalar head, initialised from the reward model as in InstructGPT: it already maps
(prompt, response) text to a number on the reward's scale, so the first value estimates are far
better than a fresh head's. Dropout is off in all four (it would make log-probs and values noisy and
the ratio at the first minibatch != 1).

Run (toy world on CPU, after sft.py and reward.py; a few minutes):
    python ppo.py --config config/ppo_toy.py
    python ppo.py --config config/ppo_toy.py --kl_coef=0 --out_dir=out/toy/ppo_beta0   # reward hacking
    python ppo.py --config config/ppo_toy.py --resume=True        # continue a stopped run from its checkpoint
GPT-2-small on HH-RLHF (one GPU), or several with torchrun (each rank rolls out its share):
    python ppo.py --config config/ppo_gpt2_hh.py
    torchrun --standalone --nproc_per_node=8 ppo.py --config config/ppo_gpt2_hh.py

Deviations from the papers: no pre-training-data mix (InstructGPT's PPO-ptx); policy and value are two
separate networks trained by one optimizer (as in TRL), not a shared trunk.

Shapes: B = rollouts in the batch, T0 = prompt length (left-padded), T = response positions. Unless
named otherwise every tensor below is (B, T) and `mask` is 1.0 on response tokens up to and including
end-of-text and 0.0 on the padding after it.
"""

import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from checkpoint import (load_checkpoint, load_model, load_reward_model, prepare_out_dir, restore_training_state,
                        save_checkpoint)
from configurator import above, at_least, between, one_of, parse_config, run_cli, stop_if_signalled
from data.batches import left_pad, tokenize_prompts
from data.formats import format_prompt, load_prompts
from data.toy.judge import check_prompts, eval_metrics, judge
from logger import MetricsLogger
from model import token_logprobs
from optim import configure_adamw, optimizer_step
from runtime import (accumulate, all_reduce_sum, batch_indices, check_finite, gather_lists, reduce_metrics, setup_runtime,
                     shard, teardown, wrap_model)
from sampling import decode_response
from tokenizer import get_tokenizer


@dataclass
class PPOConfig:
    # I/O
    out_dir: str = "out/ppo"  # checkpoint (policy + value), metrics.jsonl, curves.png, samples.txt
    resume: bool = False  # continue the run in out_dir from its ckpt.pt
    overwrite: bool = False  # allow replacing a run that already lives in out_dir
    sft_dir: str = "out/sft"  # the SFT checkpoint: the initial policy and the frozen reference
    reward_dir: str = "out/reward"  # the normalised reward model (also the value model's initialisation)
    value_init: str = "reward"  # 'reward' (InstructGPT) or 'sft' (the SFT trunk with a fresh head)
    # data
    prompts: str = "data/hh_rlhf/rl_prompts.jsonl"  # JSONL {"prompt"} for rollouts
    skip_long: bool = False  # drop (and count) prompts with no room for max_new_tokens instead of an error
    toy_eval: bool = False  # the prompts are the toy world's: score responses with its gold judge too
    eval_prompts: str = "data/toy/eval_prompts.jsonl"  # held-out toy prompts for the periodic gold evaluation
    # rollout
    batch_size: int = 64  # rollouts per iteration per process
    max_new_tokens: int = 128  # response length limit
    temperature: float = 1.0  # sampling temperature tau; log-probs are taken under the same tau
    missing_eos_penalty: float = 1.0  # subtracted from the score of a response with no end-of-text
    # reward
    kl_coef: float = 0.05  # beta: the per-token KL penalty coefficient (initial value when adaptive)
    adaptive_kl: bool = False  # Ziegler et al.'s proportional controller for beta
    target_kl: float = 6.0  # KL_target (nats per sequence) of the adaptive controller
    kl_horizon: int = 10000  # K_beta: the controller's horizon, in rollouts
    whiten_rewards: bool = False  # whiten r_t over the batch before GAE (keeping its mean)
    # PPO
    max_iters: int = 200  # iterations: rollout + update
    ppo_epochs: int = 4  # passes over each batch of rollouts
    minibatch_size: int = 16  # rollouts per gradient step per process
    learning_rate: float = 1e-5  # AdamW, for the policy and the value model
    weight_decay: float = 0.0  # AdamW weight decay on 2-D weights
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    clip_coef: float = 0.2  # epsilon of the clipped surrogate
    clip_coef_vf: float = 0.2  # epsilon of the clipped value loss (reward units)
    vf_coef: float = 0.1  # weight of the value loss
    ent_coef: float = 0.0  # weight of the entropy bonus
    gamma: float = 1.0  # discount over response tokens
    lam: float = 0.95  # GAE lambda
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)
    # evaluation and logging
    log_interval: int = 1  # iterations between metric lines
    eval_interval: int = 25  # iterations between gold evaluations on eval_prompts (toy world) + checkpoint
    eval_samples_per_prompt: int = 1  # samples per eval prompt at the eval
    sample_interval: int = 25  # iterations between sample responses written to the log
    wandb_project: str = None  # log to Weights & Biases under this project (pip install wandb)
    # system
    device: str = "auto"  # 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'
    dtype: str = "auto"  # 'auto' (bf16, or fp16 on GPUs without bf16), 'float32', 'bfloat16', 'float16'
    compile: bool = False  # torch.compile the policy and value models
    seed: int = 1337


# the meaningful ranges of PPO's own settings (the shared ones are in configurator.RANGES)
RANGES = {"temperature": above(0), "kl_coef": at_least(0), "target_kl": above(0), "kl_horizon": at_least(1),
          "clip_coef": above(0), "clip_coef_vf": above(0), "vf_coef": at_least(0), "ent_coef": at_least(0),
          "gamma": between(0, 1, high_open=False), "lam": between(0, 1, high_open=False),
          "missing_eos_penalty": at_least(0), "value_init": one_of("reward", "sft")}


# -----------------------------------------------------------------------------
# learning logic: small pure functions that tests, rl_basics/ and the notebooks call

def masked_mean(x, mask, dim=None):
    """Mean of x over the entries where mask == 1 (over `dim`, or over everything)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x, mask, shift_mean=True, distributed=False):
    """(x - mean) / sqrt(var + 1e-8) over the masked entries, with the biased variance
    E[(x - mean)^2]. With shift_mean=False the mean is added back (used for rewards, whose
    sign carries meaning). Padding stays 0. With distributed=True the mean and variance are taken
    over the masked entries of every DDP rank (all-reduced), so each rank whitens the same way."""
    total = torch.stack([(x * mask).sum(), mask.sum()])
    if distributed:
        all_reduce_sum(total)
    mean = total[0] / total[1].clamp(min=1)
    sq = ((x - mean) ** 2 * mask).sum()
    if distributed:
        all_reduce_sum(sq)
    var = sq / total[1].clamp(min=1)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def compute_gae(rewards, values, mask, gamma, lam):
    """Generalised Advantage Estimation (Schulman et al. 2016, eq. 16) over (B, T) tensors.

    delta_t = r_t + gamma * V_{t+1} - V_t         with V after the last real step taken as 0
    A_t     = delta_t + gamma * lam * A_{t+1}     (A_t = sum_l (gamma*lam)^l delta_{t+l})
    returns = A_t + V_t                            the value targets, before any whitening
    Advantages and returns are 0 on padding. The recursion runs backwards over time, vectorised
    over the batch.
    """
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])  # (B,)
    next_value = torch.zeros_like(values[:, 0])  # (B,)
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        advantages[:, t] = delta + gamma * lam * next_advantage
        # a padded step contributes nothing to the step before it: that step is the last real one
        next_advantage = advantages[:, t] * mask[:, t]
        next_value = values[:, t] * mask[:, t]
    advantages = advantages * mask
    returns = (advantages + values) * mask
    return advantages, returns


def clipped_surrogate(logp, old_logp, advantages, clip_low, clip_high):
    """PPO's clipped surrogate per token (Schulman et al. 2017, eq. 7), as a loss to minimise, with the clip
    range [1 - eps_low, 1 + eps_high] (eps_low = eps_high = eps in PPO; DAPO's "clip-higher" raises eps_high):

    ratio = pi(a|s) / pi_old(a|s) = exp(logp - old_logp)
    l_t = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A) = max(-A * ratio, -A * clip(ratio))

    Returns (B, T) tensors: the losses l_t, the terms (ratio - 1) - log ratio of approx_kl (Schulman's
    unbiased, always >= 0 "k3" estimator of KL(pi_old || pi)), and where the clip is active (bool)."""
    log_ratio = logp - old_logp  # (B, T)
    ratio = torch.exp(log_ratio)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    clipped = (ratio < 1.0 - clip_low) | (ratio > 1.0 + clip_high)
    return torch.max(pg_losses, pg_losses_clipped), (ratio - 1) - log_ratio, clipped


def policy_loss(logp, old_logp, advantages, mask, clip_coef):
    """The clipped surrogate (clipped_surrogate, eps_low = eps_high = clip_coef) averaged over every response
    token of the batch. Returns (loss, approx_kl = E[(ratio - 1) - log ratio], clipfrac = the fraction of
    tokens where the clip is active)."""
    losses, kl_terms, clipped = clipped_surrogate(logp, old_logp, advantages, clip_coef, clip_coef)
    with torch.no_grad():
        approx_kl, clipfrac = masked_mean(kl_terms, mask), masked_mean(clipped.float(), mask)
    return masked_mean(losses, mask), approx_kl, clipfrac


def value_loss(values, old_values, returns, mask, clip_coef_vf):
    """The clipped value loss of the PPO2 baselines and Ziegler et al.:

    V_clip = V_old + clip(V - V_old, -eps_v, eps_v)
    L_V = 1/2 * E[max((V - R)^2, (V_clip - R)^2)]
    """
    values_clipped = old_values + torch.clamp(values - old_values, -clip_coef_vf, clip_coef_vf)
    vf_losses = (values - returns) ** 2
    vf_losses_clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(vf_losses, vf_losses_clipped), mask)
    with torch.no_grad():
        clipfrac_vf = masked_mean((vf_losses_clipped > vf_losses).float(), mask)
    return loss, clipfrac_vf


def response_mask(response_tokens, eos_id):
    """1.0 on every response token up to and including the first end-of-text, 0.0 after it; a row with
    no end-of-text is all ones. response_tokens (B, T) -> (mask (B, T), ended (B,))."""
    is_eos = response_tokens == eos_id
    ended = is_eos.any(dim=1)
    # number of end-of-text tokens strictly before each position: 0 up to and including the first
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return (eos_before == 0).float(), ended


def kl_penalized_rewards(logp, ref_logp, scores, mask, kl_coef):
    """Per-token rewards (Ziegler et al. 2019, eq. 2, as a per-token penalty in their code):

        kl_t = log pi(a_t|s_t) - log pi_ref(a_t|s_t)       (a sample of KL(pi || pi_ref) at token t)
        r_t  = -beta * kl_t  +  [t = last response token] * score

    scores: (B,). Returns (rewards, kl), both (B, T) and 0 on padding."""
    kl = (logp - ref_logp) * mask
    rewards = -kl_coef * kl
    last = mask.sum(dim=1).long() - 1  # (B,) index of each response's last token (its end-of-text)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl


def explained_variance(values, returns, mask):
    """1 - Var[returns - values] / Var[returns] over response tokens: 1 is a perfect value function,
    0 is no better than a constant, negative is worse than a constant."""
    var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    residual = returns - values
    var_residual = masked_mean((residual - masked_mean(residual, mask)) ** 2, mask)
    return 1 - var_residual / var_returns.clamp(min=1e-8)


def entropy_from_logits(logits):
    """Entropy of softmax(logits) along the last dim: H = logsumexp(z) - sum_i softmax(z)_i z_i."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


class AdaptiveKLController:
    """Ziegler et al. 2019, section 2.2: beta_{t+1} = beta_t * (1 + K_beta * e_t) with
    e_t = clip(KL_t / KL_target - 1, -0.2, 0.2) and K_beta = n_rollouts / horizon."""

    def __init__(self, kl_coef, target_kl, horizon):
        self.kl_coef, self.target_kl, self.horizon = kl_coef, target_kl, horizon

    def update(self, current_kl, n_rollouts):
        error = float(np.clip(current_kl / self.target_kl - 1, -0.2, 0.2))
        self.kl_coef *= 1 + error * n_rollouts / self.horizon


# -----------------------------------------------------------------------------
# models and rollouts

class PolicyAndValue(nn.Module):
    """The two trained networks under one module, so that one optimizer and one DDP wrapper (whose
    gradient synchronisation needs a forward() call) cover both."""

    def __init__(self, policy, value):
        super().__init__()
        self.policy, self.value = policy, value

    def forward(self, tokens, attention_mask):
        logits, _ = self.policy(tokens, attention_mask=attention_mask)  # (B, T0 + T, vocab)
        values = self.value(tokens, attention_mask=attention_mask, scores=True)  # (B, T0 + T)
        return logits, values


def response_logprobs(logits, tokens, T0, temperature):
    """log pi(a_t | s_t) of the response tokens tokens[:, T0:], under softmax(logits / tau). The logits at
    position p predict the token at p + 1, so the response's log-probs come from positions T0-1 .. end-1."""
    return token_logprobs(logits[:, T0 - 1:-1], tokens[:, T0:], temperature)  # (B, T)


def response_scores(reward_model, tokens, attention_mask, T0, mask):
    """A reward model's score of each sampled response (B,): its scalar head at the response's last token
    (its end-of-text, or the last token sampled). tokens, attention_mask (B, T0 + T); mask (B, T)."""
    rm_scores = reward_model(tokens, attention_mask=attention_mask, scores=True)  # (B, T0 + T)
    last = T0 + mask.sum(dim=1).long() - 1  # (B,) absolute position of each response's last token
    return rm_scores.float()[torch.arange(len(last), device=last.device), last]


@torch.no_grad()
def rollout(policy, ref_model, value_model, reward_model, prompt_ids, tok, max_new_tokens, temperature,
            missing_eos_penalty, rt):
    """Step 1: sample one response per prompt (prompt_ids: lists of token ids) at temperature tau (0 =
    greedy) and compute everything the update needs. value_model may be None (evaluation, grpo.py: values
    are 0), and so may reward_model (grpo.py with a verifier: no scores).
    Returns a dict of tensors: tokens (B, T0 + T), attention_mask (B, T0 + T), T0, and (B, T) mask, logp,
    ref_logp, values; (B,) ended, and with a reward model (B,) scores (normalised reward, minus
    missing_eos_penalty for a response with no end-of-text) and raw_scores."""
    prompts, prompt_mask = left_pad(prompt_ids, tok.pad_id, rt.device)  # (B, T0)
    T0 = prompts.shape[1]
    with rt.autocast:
        tokens = policy.generate(prompts, max_new_tokens, temperature=temperature,
                                 eos_token_id=tok.eot_id, pad_token_id=tok.pad_id, attention_mask=prompt_mask)
    mask, ended = response_mask(tokens[:, T0:], tok.eot_id)  # (B, T), (B,)
    attention_mask = torch.cat([prompt_mask, mask.long()], dim=1)  # (B, T0 + T)
    with rt.autocast:
        # recompute log pi with the same forward pass as the update, so the first minibatch has ratio = 1
        logits, _ = policy(tokens, attention_mask=attention_mask)
        # evaluate.py samples the reference itself: one forward, and its KL to itself is exactly 0
        ref_logits = logits if ref_model is policy else ref_model(tokens, attention_mask=attention_mask)[0]
        # V(s_t): (B, T); without a value model (evaluation) zeros
        values = (value_model(tokens, attention_mask=attention_mask, scores=True)[:, T0 - 1:-1] if value_model is not None
                  else torch.zeros_like(mask))
        raw_scores = response_scores(reward_model, tokens, attention_mask, T0, mask) if reward_model is not None else None
    tau = temperature if temperature > 0 else 1.0  # greedy (evaluation): the model's own log-probs
    logp = response_logprobs(logits, tokens, T0, tau) * mask
    ref_logp = response_logprobs(ref_logits, tokens, T0, tau) * mask
    batch = dict(tokens=tokens, attention_mask=attention_mask, T0=T0, mask=mask, logp=logp, ref_logp=ref_logp,
                 values=values.float() * mask, ended=ended)
    if raw_scores is not None:  # (B,)
        batch["raw_scores"] = raw_scores
        batch["scores"] = raw_scores - missing_eos_penalty * (~ended).float()
    return batch


def ppo_update(model, optimizer, batch, advantages, returns, ppo_epochs, minibatch_size, clip_coef, clip_coef_vf,
               vf_coef, ent_coef, temperature, grad_clip, generator, rt):
    """Step 4: ppo_epochs passes over shuffled minibatches of a rollout batch, one gradient step each on

        L = L_clip(policy) + vf_coef * L_V - ent_coef * H

    model: PolicyAndValue (possibly DDP-wrapped); batch: rollout()'s dict, whose logp and values are the
    old policy's and old values; advantages and returns (B, T) from compute_gae. generator draws the
    minibatch order. Returns the mean over minibatches of each logged metric (this rank's)."""
    tokens, attention_mask, T0, mask = batch["tokens"], batch["attention_mask"], batch["T0"], batch["mask"]
    sums, n_minibatches, grad_norms = {}, 0, []
    for epoch in range(ppo_epochs):
        perm = torch.randperm(len(tokens), generator=generator).tolist()
        for start in range(0, len(perm), minibatch_size):
            mb = torch.tensor(perm[start:start + minibatch_size], device=rt.device)
            mb_mask = mask[mb]
            with rt.autocast:
                logits, all_values = model(tokens[mb], attention_mask[mb])  # (mb, T0 + T, vocab), (mb, T0 + T)
            logits = logits[:, T0 - 1:-1].float()  # (mb, T, vocab): the logits that predict the response
            logp = token_logprobs(logits, tokens[mb, T0:], temperature)  # (mb, T)
            mb_values = all_values[:, T0 - 1:-1].float()  # (mb, T): V(s_t)
            pg_loss, approx_kl, clipfrac = policy_loss(logp, batch["logp"][mb], advantages[mb], mb_mask, clip_coef)
            vf_loss, vf_clipfrac = value_loss(mb_values, batch["values"][mb], returns[mb], mb_mask, clip_coef_vf)
            with torch.set_grad_enabled(ent_coef > 0):  # logged always; differentiated only when it is in the loss
                entropy = masked_mean(entropy_from_logits(logits / temperature), mb_mask)
            loss = pg_loss + vf_coef * vf_loss - ent_coef * entropy
            rt.scaler.scale(loss).backward()
            grad_norms.append(optimizer_step(model, optimizer, rt.scaler, grad_clip))
            accumulate(sums, {"ppo/loss/policy": pg_loss, "ppo/loss/value": vf_loss, "ppo/approx_kl": approx_kl,
                              "ppo/clipfrac": clipfrac, "ppo/val/clipfrac": vf_clipfrac, "objective/entropy": entropy})
            n_minibatches += 1
    metrics = {k: v / n_minibatches for k, v in sums.items()}
    grad_norms = [g for g in grad_norms if g is not None]  # None: a step that fp16 loss scaling skipped
    metrics["ppo/grad_norm"] = torch.tensor(sum(grad_norms) / max(len(grad_norms), 1), device=rt.device)
    return metrics


def decode_responses(tok, batch):
    """The response texts of a rollout batch (no end-of-text marker) and whether each ended."""
    return [decode_response(tok, row[:n]) for row, n in zip(batch["tokens"][:, batch["T0"]:].tolist(),
                                                           batch["mask"].sum(1).long().tolist())]


def load_models(sft_dir, reward_dir, value_init):
    """PPO's four models: the policy and the frozen reference (both the SFT weights), the frozen normalised
    reward model, and the value model -- value_init 'reward': the reward model's weights (InstructGPT),
    'sft': the SFT trunk with a zero head. Returns (policy, ref_model, value_model, reward_model, tokenizer)."""
    policy, tok_name, _ = load_model(sft_dir, key="sft_dir")
    ref_model, _, _ = load_model(sft_dir)
    reward_model, rm_tok_name = load_reward_model(reward_dir)
    if get_tokenizer(rm_tok_name).spec != get_tokenizer(tok_name).spec:
        raise ValueError(f"--reward_dir={reward_dir}: the reward model's tokenizer is not the policy's ({sft_dir})")
    if value_init == "reward":
        value_model, _ = load_reward_model(reward_dir)
    elif value_init == "sft":
        value_model = load_model(sft_dir)[0].add_scalar_head()
        nn.init.zeros_(value_model.score_head.weight)  # V = 0 everywhere at first: a constant baseline, not noise
    else:
        raise ValueError(f"value_init {value_init!r}: expected 'reward' or 'sft'")
    return policy, ref_model, value_model, reward_model, get_tokenizer(tok_name)


def gold_evaluation(policy, ref_model, value_model, reward_model, records, tok, config, rt):
    """Gold judge, reward-model score (when there is a reward model) and KL to the reference on the held-out
    toy prompts (records), sampled at tau, eval_samples_per_prompt times each; split across ranks. Also grpo.py's."""
    n = len(records) * config.eval_samples_per_prompt  # responses over all ranks
    records = shard(records, rt) * config.eval_samples_per_prompt
    batch = rollout(policy, ref_model, value_model, reward_model, [tok.encode(format_prompt(r["prompt"])) for r in records],
                    tok, config.max_new_tokens, config.temperature, config.missing_eos_penalty, rt)
    verdicts = [judge(r["prompt"], text, ended) for r, (text, ended) in zip(records, decode_responses(tok, batch))]
    sums = {"eval/rm_score": batch["raw_scores"].sum()} if reward_model is not None else {}  # grpo.py's verifier: none
    sums["eval/kl"] = (batch["logp"] - batch["ref_logp"]).sum()
    means = reduce_metrics(sums, n)
    return {**means, **eval_metrics(gather_lists(verdicts, rt))}


# -----------------------------------------------------------------------------

def main():
    config = parse_config(PPOConfig, ranges=RANGES)
    rt = setup_runtime(config.device, config.dtype, config.seed)

    # --- models: policy and value are trained; the reference and the reward model are frozen ------
    resume_ckpt = load_checkpoint(config.out_dir, stages=("ppo",), key="out_dir") if config.resume else None
    policy, ref_model, value_model, reward_model, tok = load_models(config.sft_dir, config.reward_dir, config.value_init)
    if resume_ckpt is not None:  # the trained two from the run being continued
        policy.load_state_dict(resume_ckpt["model"])
        value_model.load_state_dict(resume_ckpt["value_model"])

    # --- data: prompts that leave room for max_new_tokens -------------------------------------------
    prompt_records, prompt_ids, n_long = tokenize_prompts(load_prompts(config.prompts), tok, policy.config.block_size,
                                                          config.max_new_tokens, config.prompts, config.skip_long)
    eval_records = []
    if config.toy_eval:  # the gold judge scores the rollouts' prompts and the held-out ones
        eval_records = tokenize_prompts(load_prompts(config.eval_prompts), tok, policy.config.block_size,
                                        config.max_new_tokens, config.eval_prompts, config.skip_long)[0]
        check_prompts(prompt_records, config.prompts)
        check_prompts(eval_records, config.eval_prompts)
    if rt.master:
        prepare_out_dir(config.out_dir, config.resume, config.overwrite, inputs={
            "sft_dir": config.sft_dir, "reward_dir": config.reward_dir, "prompts": config.prompts,
            "eval_prompts": config.eval_prompts if config.toy_eval else None})
        print(f"ppo: {len(prompt_ids)} prompts (skipped as too long: {n_long}); {config.batch_size * rt.world_size} rollouts "
              f"per iteration = {config.batch_size} x {rt.world_size} processes; {config.max_iters} iterations; "
              f"minibatch {config.minibatch_size} x {config.ppo_epochs} epochs; policy {policy.get_num_params() / 1e6:.2f}M "
              f"parameters; device {rt.device}, dtype {rt.dtype}")

    for m in (policy, ref_model, value_model, reward_model):
        m.to(rt.device)
    for m in (ref_model, reward_model):
        m.eval().requires_grad_(False)
    trainable = PolicyAndValue(policy, value_model).train()
    optimizer = configure_adamw(trainable, config.learning_rate, config.weight_decay, (config.beta1, config.beta2), rt.device_type)
    kl_ctl = AdaptiveKLController(config.kl_coef, config.target_kl, config.kl_horizon)
    start = 0
    if resume_ckpt is not None:  # the optimizer, scaler, RNG and KL controller as they were after iteration `start`
        start = restore_training_state(resume_ckpt, optimizer, rt.scaler)
        kl_ctl.kl_coef = resume_ckpt["kl_coef"]
    del resume_ckpt
    model = wrap_model(trainable, rt, config.compile)
    logger = MetricsLogger(config, enabled=rt.master, start_step=start)
    models = (policy, ref_model, value_model, reward_model)  # for the periodic gold evaluation
    if config.toy_eval and start == 0:
        logger.log(0, gold_evaluation(*models, eval_records, tok, config, rt), config.max_iters)

    # --- the training loop ---------------------------------------------------------------------------
    for it in range(start + 1, config.max_iters + 1):
        stop_if_signalled()  # a Ctrl-C / SIGTERM whose exception Python swallowed (configurator.py)
        t_start = time.time()
        # 1. rollout: this rank's share of a global batch drawn the same way on every rank
        ids = batch_indices(len(prompt_ids), config.batch_size * rt.world_size, config.seed, it)
        ids = ids[rt.rank * config.batch_size:(rt.rank + 1) * config.batch_size]
        policy.eval()
        batch = rollout(policy, ref_model, value_model, reward_model, [prompt_ids[i] for i in ids], tok,
                        config.max_new_tokens, config.temperature, config.missing_eos_penalty, rt)
        policy.train()
        mask, values = batch["mask"], batch["values"]
        t_rollout = time.time() - t_start

        # 2. rewards: the score at the last token, a KL penalty on every token
        rewards, kl = kl_penalized_rewards(batch["logp"], batch["ref_logp"], batch["scores"], mask, kl_ctl.kl_coef)
        if config.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False, distributed=rt.ddp)
        # 3. advantages and value targets; returns are taken before the advantages are whitened
        advantages, returns = compute_gae(rewards, values, mask, config.gamma, config.lam)
        advantages = masked_whiten(advantages, mask, distributed=rt.ddp)
        # 4. PPO epochs over shuffled minibatches
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + it * 101 + rt.rank)
        update = ppo_update(model, optimizer, batch, advantages, returns, config.ppo_epochs, config.minibatch_size,
                            config.clip_coef, config.clip_coef_vf, config.vf_coef, config.ent_coef, config.temperature,
                            config.grad_clip, g, rt)

        # --- logging: every number is averaged over all ranks -------------------------------------------
        n = len(ids) * rt.world_size
        metrics = reduce_metrics({
            "env/reward_mean": batch["raw_scores"].sum(), "env/score_with_penalty": batch["scores"].sum(),
            "objective/kl": kl.sum(dim=1).sum(), "response/length": mask.sum(), "response/ended": batch["ended"].float().sum(),
            "ppo/explained_variance": explained_variance(values, returns, mask) * len(ids)}, n)
        metrics.update({"objective/kl_coef": kl_ctl.kl_coef, **reduce_metrics(update, rt.world_size)})
        sample_now = config.sample_interval and it % config.sample_interval == 0
        responses = decode_responses(tok, batch) if (config.toy_eval or sample_now) else None
        if config.toy_eval:
            gold = sum(judge(prompt_records[i]["prompt"], text, ended)["score"] for i, (text, ended) in zip(ids, responses))
            metrics.update(reduce_metrics({"env/gold_score": torch.tensor(float(gold), device=rt.device)}, n))
        check_finite(metrics, it, config.out_dir)
        if config.adaptive_kl:
            kl_ctl.update(metrics["objective/kl"], n)
        dt = time.time() - t_start
        metrics["perf/tokens_per_s"] = metrics["response/length"] * n / dt  # response tokens sampled and trained on, all ranks
        metrics["perf/rollout_fraction"] = t_rollout / dt
        if it % config.log_interval == 0:
            logger.log(it, metrics, config.max_iters)
        if rt.master and sample_now:
            with open(os.path.join(config.out_dir, "samples.txt"), "a") as f:
                for i, (text, ended) in list(zip(ids, responses))[:4]:
                    line = f"[iter {it}] {prompt_records[i]['prompt']!r} -> {text!r}{'' if ended else ' (no end)'}"
                    f.write(line + "\n")
                    print(line)
        if it % config.eval_interval == 0 or it == config.max_iters:
            if config.toy_eval:
                eval_metrics = gold_evaluation(*models, eval_records, tok, config, rt)
                check_finite(eval_metrics, it, config.out_dir)
                logger.log(it, eval_metrics, config.max_iters)
            if rt.master:
                save_checkpoint(config.out_dir, policy, config, it, tok.spec, optimizer, rt.scaler, stage="ppo",
                                extra={"value_model": value_model.state_dict(), "kl_coef": kl_ctl.kl_coef})
            logger.plot(os.path.join(config.out_dir, "curves.png"),
                        ["env/reward_mean", "env/gold_score", "objective/kl", "ppo/approx_kl", "ppo/clipfrac",
                         "ppo/explained_variance", "response/length", "eval/gold_score"], "PPO")

    logger.finish()
    teardown(rt)


if __name__ == "__main__":
    run_cli(main)
