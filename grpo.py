"""
grpo.py -- critic-free RL: the policy is pushed towards the responses that scored better than the other
responses to the same prompt, with no value model. GRPO (Shao et al. 2024, DeepSeekMath, section 4.1),
Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"), RLOO (Ahmadian et al. 2024, "Back to
Basics"; Kool et al. 2019) and DAPO's clip-higher and zero-signal filtering (Yu et al. 2025), with a learned
reward model or a verifiable reward (a rule that checks the answer: DeepSeek-R1; Lambert et al. 2024, Tulu 3).

One iteration:
  1. rollout: draw P prompts and sample a group of G responses to each from the current policy at
     temperature tau (ppo.rollout: KV cache, log pi under tau, the frozen reference's log-probs);
  2. rewards: one number R_i per response -- the normalised reward model's score at its end-of-text
     (reward='model'), a rule's verdict (reward='verifier'), or the rule where it applies and the reward
     model elsewhere ('model+verifier'); with kl_in='reward', minus beta * the response's sampled KL.
     unverified='zero' lets reward='verifier' sample prompts the rule cannot check: they get R_i = 0, so
     only the KL term acts on them, holding the behaviour the rule says nothing about at the reference;
  3. advantages within each group, no value model: GRPO (R_i - mean) / (std + eps), Dr. GRPO R_i - mean,
     RLOO R_i - mean of the other G - 1; every token of a response gets its response's advantage;
  4. mu (grpo_epochs) passes over shuffled minibatches of PPO's clipped surrogate (clip range
     [1 - eps_low, 1 + eps_high]) + beta * the k3 KL to the reference per token (kl_in='loss'),
     aggregated over tokens the way loss_agg says: the choice these papers argue about.
What it drops from PPO: the value model (and GAE, and the value loss), the per-batch whitening of
advantages -- three models are held (policy, reference, reward model), two with the verifier, against four.

Run (toy world on CPU, after sft.py and reward.py; a few minutes):
    python grpo.py --config config/grpo_toy.py
    python grpo.py --config config/grpo_toy.py --reward=verifier --prompt_kinds=math --out_dir=out/toy/grpo_math
    python grpo.py --config config/grpo_verifier_toy.py   # every kind sampled, the rule on the sums only (~6 min)
    python grpo.py --config config/grpo_toy.py --advantage=dr_grpo --loss_agg=dr_grpo --out_dir=out/toy/dr_grpo
    python grpo.py --config config/grpo_toy.py --resume=True        # continue a stopped run from its checkpoint
GPT-2-small on HH-RLHF (one GPU), or several with torchrun (each rank samples whole groups of its prompts):
    python grpo.py --config config/grpo_gpt2_hh.py
    torchrun --standalone --nproc_per_node=8 grpo.py --config config/grpo_gpt2_hh.py

Deviations from the papers:
  1. outcome rewards only (one number per response; DeepSeekMath's process supervision is not here);
  2. the group's std is the unbiased sample std (ddof = 1, as TRL); a group whose rewards are all equal gets
     advantage 0 exactly, not 0 / eps rounding noise;
  3. drop_equal_groups masks zero-signal groups out of the update; DAPO also oversamples to refill the batch;
  4. loss_agg is applied per minibatch, the unit of one gradient step (with one minibatch per batch, as
     mu = 1 and minibatch_size = P * G, it is over the whole batch, as in the papers);
  5. kl_in='reward' subtracts beta * sum_t (log pi - log pi_ref) from R_i: PPO's per-token penalty summed
     over the response, which is what an outcome advantage sees of it (as TRL's RLOO).

Shapes: P prompts per process, G responses per prompt, B = P * G responses laid out group after group
(responses i*G .. i*G + G - 1 answer prompt i), T0 = prompt length (left-padded), T = response positions.
`mask` (B, T) is 1.0 on response tokens up to and including end-of-text, 0.0 after it.
"""

import os
import time
from dataclasses import dataclass

import torch

from checkpoint import load_checkpoint, load_model, load_reward_model, prepare_out_dir, restore_training_state, save_checkpoint
from configurator import ConfigError, above, at_least, between, one_of, parse_config, run_cli, stop_if_signalled
from data.batches import tokenize_prompts
from data.formats import DataError, load_prompts, where_is
from data.toy import verifier as toy_verifier
from data.toy import world
from data.toy.judge import check_prompts, judge
from logger import MetricsLogger
from model import token_logprobs
from optim import configure_adamw, optimizer_step
from ppo import clipped_surrogate, decode_responses, entropy_from_logits, gold_evaluation, masked_mean, rollout
from runtime import accumulate, batch_indices, check_finite, reduce_metrics, setup_runtime, teardown, wrap_model
from tokenizer import get_tokenizer


@dataclass
class GRPOConfig:
    # I/O
    out_dir: str = "out/grpo"  # checkpoint (the policy), metrics.jsonl, curves.png, samples.txt
    resume: bool = False  # continue the run in out_dir from its ckpt.pt
    overwrite: bool = False  # allow replacing a run that already lives in out_dir
    sft_dir: str = "out/sft"  # the SFT checkpoint: the initial policy and the frozen reference
    reward_dir: str = "out/reward"  # the normalised reward model (reward 'model' or 'model+verifier')
    # reward
    reward: str = "model"  # 'model' (the reward model), 'verifier' (a rule), 'model+verifier' (the rule where it applies)
    verifier: str = "toy_math"  # the rule, a key of VERIFIERS
    unverified: str = "error"  # reward='verifier' on a prompt the rule cannot check: 'error', or 'zero' (R = 0 there)
    missing_eos_penalty: float = 1.0  # subtracted from the reward model's score of a response with no end-of-text
    # data
    prompts: str = "data/hh_rlhf/rl_prompts.jsonl"  # JSONL {"prompt"} for rollouts
    prompt_kinds: str = ""  # toy world: train only on these kinds, comma-separated (e.g. 'math'); '' = every prompt
    skip_long: bool = False  # drop (and count) prompts with no room for max_new_tokens instead of an error
    toy_eval: bool = False  # the prompts are the toy world's: score responses with its gold judge too
    eval_prompts: str = "data/toy/eval_prompts.jsonl"  # held-out toy prompts for the periodic gold evaluation
    # rollout
    prompts_per_iter: int = 16  # P: prompts per iteration per process
    group_size: int = 4  # G: responses sampled per prompt (a group never straddles two processes)
    max_new_tokens: int = 128  # response length limit (also Dr. GRPO's constant normaliser)
    temperature: float = 1.0  # sampling temperature tau; log-probs are taken under the same tau
    # advantages and loss
    advantage: str = "grpo"  # 'grpo' (R - mean) / (std + eps), 'dr_grpo' R - mean, 'rloo' R - mean of the others
    adv_eps: float = 1e-4  # eps of GRPO's (std + eps)
    loss_agg: str = "grpo"  # 'grpo' mean per response then over responses, 'dapo' mean over tokens, 'dr_grpo' sum / max_new_tokens
    kl_coef: float = 0.04  # beta (DeepSeekMath: 0.04); 0 = no KL regularisation
    kl_in: str = "loss"  # 'loss': beta * k3 per token in the loss (GRPO); 'reward': -beta * KL in the reward (PPO)
    clip_low: float = 0.2  # eps_low: the ratio is clipped at 1 - eps_low
    clip_high: float = 0.2  # eps_high: ... and at 1 + eps_high (DAPO's clip-higher: 0.28)
    drop_equal_groups: bool = False  # leave groups whose rewards are all equal out of the update (DAPO)
    # optimisation
    max_iters: int = 200  # iterations: rollout + update
    grpo_epochs: int = 1  # mu: passes over each batch (1 = on-policy: the ratio is 1 at the first step)
    minibatch_size: int = 64  # responses per gradient step per process
    learning_rate: float = 1e-6  # AdamW
    weight_decay: float = 0.0  # AdamW weight decay on 2-D weights
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
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
    compile: bool = False  # torch.compile the policy
    seed: int = 1337


# the rules reward='verifier' can use: name -> f(prompt, response, ended) -> 1.0 / 0.0, or None where it does not apply
VERIFIERS = {"toy_math": toy_verifier.math_reward}

# the meaningful ranges of GRPO's own settings (the shared ones are in configurator.RANGES)
RANGES = {"reward": one_of("model", "verifier", "model+verifier"), "verifier": one_of(*VERIFIERS),
          "unverified": one_of("error", "zero"),
          "missing_eos_penalty": at_least(0), "prompts_per_iter": at_least(1), "group_size": at_least(2),
          "temperature": above(0), "advantage": one_of("grpo", "dr_grpo", "rloo"), "adv_eps": above(0),
          "loss_agg": one_of("grpo", "dapo", "dr_grpo"), "kl_coef": at_least(0), "kl_in": one_of("loss", "reward"),
          "clip_low": between(0, 1), "clip_high": above(0), "grpo_epochs": at_least(1)}


def check_reward_settings(config):
    """Settings that mean nothing (or undo each other) for the chosen reward are an error, not silently ignored."""
    if config.unverified == "zero" and config.reward != "verifier":
        raise ConfigError(f"unverified = 'zero': what the rule cannot check is scored by the reward model under "
                          f"reward={config.reward!r}; it applies to reward='verifier' only")
    if config.unverified == "zero" and config.kl_coef == 0:
        raise ConfigError("unverified = 'zero' with kl_coef = 0: nothing would act on the prompts the rule cannot "
                          "check (reward 0, no KL term); filter them with --prompt_kinds instead")
    if config.unverified == "zero" and config.kl_in == "loss" and config.drop_equal_groups:
        raise ConfigError("unverified = 'zero' with kl_in = 'loss' and drop_equal_groups: every group the rule cannot "
                          "check has equal rewards (0) and would be dropped, its KL term with it")


# -----------------------------------------------------------------------------
# learning logic: small pure functions that tests and the notebooks call

def response_rewards(mode, rm_scores, verdicts, device, unverified="error"):
    """R_i, one reward per response (B,). rm_scores: (B,) the reward model's normalised scores (minus the
    missing end-of-text penalty), or None without a reward model; verdicts: the rule's 1.0 / 0.0 per response,
    None where it does not apply (or None for all, without a rule).
        'model'           R_i = rm_score_i
        'verifier'        R_i = verdict_i; where the rule does not apply an error, or with unverified='zero'
                          R_i = 0: the group's rewards are equal, so only the KL term moves it (kl_in='loss':
                          k3 alone; kl_in='reward': R_i = -beta * KL_i, the group's advantages rank by KL)
        'model+verifier'  R_i = verdict_i where the rule applies, rm_score_i elsewhere
    Within a group every response answers the same prompt, so a group is scored by one source only."""
    if mode == "model":
        return rm_scores
    rule = torch.tensor([float("nan") if v is None else v for v in verdicts], device=device)  # (B,) nan: no verdict
    if mode == "verifier":
        if unverified == "zero":
            return torch.nan_to_num(rule, nan=0.0)
        if rule.isnan().any():
            raise ValueError("reward='verifier': the rule does not apply to some prompts")
        return rule
    return torch.where(rule.isnan(), rm_scores, rule)


def equal_reward_groups(rewards, group):
    """(n_groups,) bool: the groups whose rewards are all equal. rewards (B,), group (B,) the group index of
    each response (0 .. n_groups - 1; groups may differ in size). Their advantages are 0 under every
    estimator: such a group carries no signal (DAPO's reason to drop it)."""
    n_groups = int(group.max()) + 1
    high = torch.full((n_groups,), -float("inf"), dtype=rewards.dtype, device=rewards.device).scatter_reduce(0, group, rewards, "amax")
    low = torch.full((n_groups,), float("inf"), dtype=rewards.dtype, device=rewards.device).scatter_reduce(0, group, rewards, "amin")
    return high == low


def group_advantages(rewards, group, estimator, eps=1e-4):
    """The advantage A_i of each response from the rewards of its group alone (no value model). rewards (B,),
    group (B,) each response's group index; groups may differ in size, each needs >= 2 responses.
        'grpo'     A_i = (R_i - mean_g R) / (std_g R + eps)        Shao et al. 2024, DeepSeekMath, sec. 4.1.2
                   (std with ddof = 1)
        'dr_grpo'  A_i = R_i - mean_g R                            Liu et al. 2025, Dr. GRPO: no std division
        'rloo'     A_i = R_i - 1/(G-1) sum_{j != i} R_j            Ahmadian et al. 2024; Kool et al. 2019:
                   the baseline leaves the sample itself out, so it is independent of it (= G/(G-1) (R_i - mean))
    A group of equal rewards gets A = 0 exactly. Returns (B,)."""
    n_groups = int(group.max()) + 1
    zeros = torch.zeros(n_groups, dtype=rewards.dtype, device=rewards.device)
    count = zeros.index_add(0, group, torch.ones_like(rewards))  # (n_groups,) G of each group
    if (count < 2).any():
        raise ValueError(f"group_advantages: every group needs >= 2 responses, got sizes {count.long().tolist()}")
    total = zeros.index_add(0, group, rewards)  # (n_groups,) sum_g R
    mean = (total / count)[group]  # (B,) each response's group mean
    if estimator == "grpo":
        var = zeros.index_add(0, group, (rewards - mean) ** 2) / (count - 1)  # (n_groups,) unbiased
        advantages = (rewards - mean) / (var.sqrt()[group] + eps)
    elif estimator == "dr_grpo":
        advantages = rewards - mean
    elif estimator == "rloo":
        others_mean = (total[group] - rewards) / (count[group] - 1)  # (B,) the mean of the other G - 1
        advantages = rewards - others_mean
    else:
        raise ValueError(f"advantage {estimator!r}: expected 'grpo', 'dr_grpo' or 'rloo'")
    return torch.where(equal_reward_groups(rewards, group)[group], torch.zeros_like(advantages), advantages)


def k3_kl(logp, ref_logp):
    """Per-token KL(pi || pi_ref) estimate of GRPO's loss (Shao et al. 2024, eq. 4; Schulman's "k3", the
    estimator of ppo.clipped_surrogate's approx_kl, here against the reference instead of the old policy):
        D_t = pi_ref / pi - log(pi_ref / pi) - 1 = exp(ref_logp - logp) - (ref_logp - logp) - 1
    >= 0 for every token (x - log x - 1 >= 0), 0 where pi = pi_ref, unbiased for KL(pi || pi_ref) when the
    token is sampled from pi. (B, T) -> (B, T)."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def aggregate_loss(token_losses, mask, loss_agg, max_new_tokens):
    """One scalar from per-token losses (B, T) over the response tokens (mask (B, T)): how long responses weigh.
        'grpo'     1/B sum_i 1/|o_i| sum_t l_it     each response counts once, whatever its length
                   (DeepSeekMath eq. 3; Dr. GRPO shows it favours long wrong answers: their tokens weigh less)
        'dapo'     1/sum_i |o_i| sum_i sum_t l_it   each token counts once (Yu et al. 2025, DAPO eq. 8)
        'dr_grpo'  1/(B * L) sum_i sum_t l_it       a constant L = max_new_tokens (Liu et al. 2025, Dr. GRPO)
    B counts the responses with at least one unmasked token (drop_equal_groups masks a group out whole).
    Returns a scalar tensor."""
    n_responses = (mask.sum(dim=1) > 0).sum().clamp(min=1)  # B: a response masked out entirely does not count
    if loss_agg == "grpo":
        return masked_mean(token_losses, mask, dim=1).sum() / n_responses
    if loss_agg == "dapo":
        return masked_mean(token_losses, mask)
    if loss_agg == "dr_grpo":
        return (token_losses * mask).sum() / (n_responses * max_new_tokens)
    raise ValueError(f"loss_agg {loss_agg!r}: expected 'grpo', 'dapo' or 'dr_grpo'")


def grpo_update(model, optimizer, batch, advantages, config, generator, rt):
    """Step 4: mu = grpo_epochs passes over shuffled minibatches of a rollout batch, one gradient step each on

        L = aggregate_t( l_t^clip(A_i) + beta * D_t^k3 )      (the k3 term only with kl_in='loss')

    model: the policy (possibly DDP-wrapped); batch: ppo.rollout()'s dict, whose logp is the old policy's;
    advantages (B,) from group_advantages. generator draws the minibatch order. Returns the mean over
    minibatches of each logged metric (this rank's)."""
    tokens, attention_mask, T0, mask = batch["tokens"], batch["attention_mask"], batch["T0"], batch["mask"]
    kl_coef = config.kl_coef if config.kl_in == "loss" else 0.0
    sums, n_minibatches, grad_norms = {}, 0, []
    for epoch in range(config.grpo_epochs):
        perm = torch.randperm(len(tokens), generator=generator).tolist()
        for start in range(0, len(perm), config.minibatch_size):
            mb = torch.tensor(perm[start:start + config.minibatch_size], device=rt.device)
            mb_mask = mask[mb]
            with rt.autocast:
                logits, _ = model(tokens[mb], attention_mask=attention_mask[mb])  # (mb, T0 + T, vocab)
            logits = logits[:, T0 - 1:-1].float()  # (mb, T, vocab): the logits that predict the response
            logp = token_logprobs(logits, tokens[mb, T0:], config.temperature)  # (mb, T)
            # every token of response i gets A_i: (mb, 1) broadcast over T
            pg_losses, kl_terms, clipped = clipped_surrogate(logp, batch["logp"][mb], advantages[mb, None],
                                                             config.clip_low, config.clip_high)
            kl = k3_kl(logp, batch["ref_logp"][mb])  # (mb, T)
            loss = aggregate_loss(pg_losses + kl_coef * kl, mb_mask, config.loss_agg, config.max_new_tokens)
            rt.scaler.scale(loss).backward()
            grad_norms.append(optimizer_step(model, optimizer, rt.scaler, config.grad_clip))
            with torch.no_grad():
                accumulate(sums, {"grpo/loss": loss, "grpo/loss/policy": aggregate_loss(pg_losses, mb_mask, config.loss_agg,
                                                                                         config.max_new_tokens),
                                  "grpo/kl_k3": masked_mean(kl, mb_mask), "grpo/approx_kl": masked_mean(kl_terms, mb_mask),
                                  "grpo/clipfrac": masked_mean(clipped.float(), mb_mask),
                                  "objective/entropy": masked_mean(entropy_from_logits(logits / config.temperature), mb_mask)})
            n_minibatches += 1
    metrics = {k: v / n_minibatches for k, v in sums.items()}
    grad_norms = [g for g in grad_norms if g is not None]  # None: a step that fp16 loss scaling skipped
    metrics["grpo/grad_norm"] = torch.tensor(sum(grad_norms) / max(len(grad_norms), 1), device=rt.device)
    return metrics


def rank_groups(n_prompts, prompts_per_iter, group_size, seed, it, rank, world_size):
    """This rank's rollouts of iteration `it`: (prompt index of each response (B,) list, group index (B,)).
    Every rank draws the same global P * world_size prompts and takes its own P of them whole, G responses
    each, laid out group after group: a group never straddles two ranks, so advantages need no all-reduce."""
    ids = batch_indices(n_prompts, prompts_per_iter * world_size, seed, it)
    ids = ids[rank * prompts_per_iter:(rank + 1) * prompts_per_iter]
    return [i for i in ids for _ in range(group_size)], torch.arange(len(ids)).repeat_interleave(group_size)


# -----------------------------------------------------------------------------
# data

def training_prompts(config, tok, block_size):
    """The rollout prompts: read, filtered to prompt_kinds (toy world), tokenised with room for max_new_tokens,
    and checked against the rule when every reward is the verifier's. Returns (records, token ids, n skipped)."""
    records = load_prompts(config.prompts)
    if config.toy_eval or config.prompt_kinds:
        check_prompts(records, config.prompts)
    if config.prompt_kinds:
        kinds = config.prompt_kinds.split(",")
        unknown = sorted(set(kinds) - set(world.KINDS))
        if unknown:
            raise ValueError(f"--prompt_kinds={config.prompt_kinds}: unknown kind {unknown[0]!r}; expected some of "
                             f"{', '.join(world.KINDS)}")
        records = [r for r in records if world.parse_prompt(r["prompt"])[0] in kinds]
        if not records:
            raise DataError(f"{config.prompts}: no prompt of kind {config.prompt_kinds}")
    if config.reward == "verifier":
        rule = VERIFIERS[config.verifier]
        checkable = [rule(r["prompt"], "") is not None for r in records]
        if config.unverified == "error" and not all(checkable):
            i = checkable.index(False)
            raise DataError(f"{where_is(config.prompts, records[i], i)}: the verifier {config.verifier!r} does not apply to "
                            f"this prompt; with reward='verifier' every prompt needs it (filter with --prompt_kinds, "
                            f"use --unverified=zero, or --reward=model+verifier)")
        if not any(checkable):
            raise DataError(f"{config.prompts}: the verifier {config.verifier!r} applies to none of these prompts")
    return tokenize_prompts(records, tok, block_size, config.max_new_tokens, config.prompts, config.skip_long)


# -----------------------------------------------------------------------------

def main():
    config = parse_config(GRPOConfig, ranges=RANGES)
    check_reward_settings(config)
    rt = setup_runtime(config.device, config.dtype, config.seed)
    uses_model, uses_rule = config.reward != "verifier", config.reward != "model"

    # --- models: the policy is trained; the reference (and the reward model) are frozen --------------
    resume_ckpt = load_checkpoint(config.out_dir, stages=("grpo",), key="out_dir") if config.resume else None
    policy, tok_name, _ = load_model(config.sft_dir, key="sft_dir")
    ref_model, _, _ = load_model(config.sft_dir)
    tok = get_tokenizer(tok_name)
    reward_model = None
    if uses_model:
        reward_model, rm_tok_name = load_reward_model(config.reward_dir)
        if get_tokenizer(rm_tok_name).spec != tok.spec:
            raise ValueError(f"--reward_dir={config.reward_dir}: the reward model's tokenizer is not the policy's "
                             f"({config.sft_dir})")
    if resume_ckpt is not None:  # the trained policy of the run being continued
        policy.load_state_dict(resume_ckpt["model"])
    rule = VERIFIERS[config.verifier] if uses_rule else None

    # --- data: prompts that leave room for max_new_tokens -------------------------------------------
    prompt_records, prompt_ids, n_long = training_prompts(config, tok, policy.config.block_size)
    eval_records = []
    if config.toy_eval:  # the gold judge scores the rollouts' prompts and the held-out ones
        eval_records = check_prompts(tokenize_prompts(load_prompts(config.eval_prompts), tok, policy.config.block_size,
                                                      config.max_new_tokens, config.eval_prompts, config.skip_long)[0],
                                     config.eval_prompts)
    P, G = config.prompts_per_iter, config.group_size
    if rt.master:
        prepare_out_dir(config.out_dir, config.resume, config.overwrite, inputs={
            "sft_dir": config.sft_dir, "reward_dir": config.reward_dir if uses_model else None, "prompts": config.prompts,
            "eval_prompts": config.eval_prompts if config.toy_eval else None})
        print(f"grpo: {len(prompt_ids)} prompts{f' of kind {config.prompt_kinds}' if config.prompt_kinds else ''} "
              f"(skipped as too long: {n_long}); {P * rt.world_size} prompts x G = {G} = {P * G * rt.world_size} "
              f"responses per iteration ({P} prompts x {rt.world_size} processes); {config.max_iters} iterations; "
              f"minibatch {config.minibatch_size} x {config.grpo_epochs} epochs; reward {config.reward}; advantage "
              f"{config.advantage}, loss_agg {config.loss_agg}, KL in the {config.kl_in} (beta {config.kl_coef:g}); "
              f"policy {policy.get_num_params() / 1e6:.2f}M parameters; device {rt.device}, dtype {rt.dtype}")

    frozen = [ref_model] + ([reward_model] if reward_model is not None else [])
    for m in [policy] + frozen:
        m.to(rt.device)
    for m in frozen:
        m.eval().requires_grad_(False)
    optimizer = configure_adamw(policy, config.learning_rate, config.weight_decay, (config.beta1, config.beta2), rt.device_type)
    start = 0
    if resume_ckpt is not None:  # the optimizer, scaler and RNG as they were after iteration `start`
        start = restore_training_state(resume_ckpt, optimizer, rt.scaler)
    del resume_ckpt
    model = wrap_model(policy, rt, config.compile)
    logger = MetricsLogger(config, enabled=rt.master, start_step=start)
    if config.toy_eval and start == 0:
        logger.log(0, gold_evaluation(policy, ref_model, None, reward_model, eval_records, tok, config, rt), config.max_iters)

    # --- the training loop ---------------------------------------------------------------------------
    for it in range(start + 1, config.max_iters + 1):
        stop_if_signalled()  # a Ctrl-C / SIGTERM whose exception Python swallowed (configurator.py)
        t_start = time.time()
        # 1. rollout: this rank's P prompts, G responses each, group after group
        ids, group = rank_groups(len(prompt_ids), P, G, config.seed, it, rt.rank, rt.world_size)  # (B,), (B,)
        group = group.to(rt.device)
        policy.eval()
        batch = rollout(policy, ref_model, None, reward_model, [prompt_ids[i] for i in ids], tok, config.max_new_tokens,
                        config.temperature, config.missing_eos_penalty, rt)
        policy.train()
        mask = batch["mask"]
        responses = decode_responses(tok, batch)  # [(text, ended)] * B
        t_rollout = time.time() - t_start

        # 2. rewards: one number per response; the sampled KL per response, log pi - log pi_ref summed
        verdicts = [rule(prompt_records[i]["prompt"], text, ended) for i, (text, ended) in zip(ids, responses)] if rule else None
        rewards = response_rewards(config.reward, batch.get("scores"), verdicts, rt.device, config.unverified)  # (B,)
        kl = ((batch["logp"] - batch["ref_logp"]) * mask).sum(dim=1)  # (B,)
        if config.kl_in == "reward":  # R_i - beta * sum_t kl_t: PPO's per-token penalty, summed over the response
            rewards = rewards - config.kl_coef * kl
        # 3. advantages within each group; zero-signal groups optionally masked out of the update (masked, not
        #    removed, so every rank takes the same number of gradient steps)
        advantages = group_advantages(rewards, group, config.advantage, config.adv_eps)  # (B,)
        equal = equal_reward_groups(rewards, group)  # (P,)
        update_batch = dict(batch, mask=mask * (~equal)[group, None]) if config.drop_equal_groups else batch
        # 4. mu epochs of the clipped surrogate over shuffled minibatches
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + it * 101 + rt.rank)
        update = grpo_update(model, optimizer, update_batch, advantages, config, g, rt)

        # --- logging: every number is averaged over all ranks -------------------------------------------
        n = len(ids) * rt.world_size
        sums = {"env/reward": rewards.sum(), "objective/kl": kl.sum(), "response/length": mask.sum(),
                "response/ended": batch["ended"].float().sum(), "grpo/advantage_abs": advantages.abs().sum()}
        if reward_model is not None:
            sums["env/reward_mean"] = batch["raw_scores"].sum()
        metrics = reduce_metrics(sums, n)
        if rule:  # the rule's accuracy over the responses it applies to
            applied = [v for v in verdicts if v is not None]
            correct, n_applied = reduce_metrics({"correct": torch.tensor(float(sum(applied)), device=rt.device),
                                                 "n": torch.tensor(float(len(applied)), device=rt.device)}).values()
            metrics["env/verifier_correct"] = correct / max(n_applied, 1.0)
        metrics.update(reduce_metrics({"grpo/equal_reward_groups": equal.float().sum()}, P * rt.world_size))
        metrics.update(reduce_metrics(update, rt.world_size))
        sample_now = config.sample_interval and it % config.sample_interval == 0
        if config.toy_eval:
            gold = sum(judge(prompt_records[i]["prompt"], text, ended)["score"] for i, (text, ended) in zip(ids, responses))
            metrics.update(reduce_metrics({"env/gold_score": torch.tensor(float(gold), device=rt.device)}, n))
        check_finite(metrics, it, config.out_dir)
        dt = time.time() - t_start
        metrics["perf/tokens_per_s"] = metrics["response/length"] * n / dt  # response tokens sampled and trained on, all ranks
        metrics["perf/rollout_fraction"] = t_rollout / dt
        if it % config.log_interval == 0:
            logger.log(it, metrics, config.max_iters)
        if rt.master and sample_now:
            with open(os.path.join(config.out_dir, "samples.txt"), "a") as f:
                for k in range(min(G, 4)):  # the first group: one prompt, its responses and their rewards
                    text, ended = responses[k]
                    line = (f"[iter {it}] {prompt_records[ids[k]]['prompt']!r} -> {text!r}{'' if ended else ' (no end)'} "
                            f"R={rewards[k].item():+.2f} A={advantages[k].item():+.2f}")
                    f.write(line + "\n")
                    print(line)
        if it % config.eval_interval == 0 or it == config.max_iters:
            if config.toy_eval:
                eval_metrics = gold_evaluation(policy, ref_model, None, reward_model, eval_records, tok, config, rt)
                check_finite(eval_metrics, it, config.out_dir)
                logger.log(it, eval_metrics, config.max_iters)
            if rt.master:
                save_checkpoint(config.out_dir, policy, config, it, tok.spec, optimizer, rt.scaler, stage="grpo")
            logger.plot(os.path.join(config.out_dir, "curves.png"),
                        ["env/reward", "env/gold_score", "env/verifier_correct", "objective/kl", "grpo/equal_reward_groups",
                         "grpo/clipfrac", "objective/entropy", "response/length", "eval/gold_score"], "GRPO")

    logger.finish()
    teardown(rt)


if __name__ == "__main__":
    run_cli(main)
