"""
ppo.py -- RLHF with PPO (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences";
Ouyang et al. 2022, InstructGPT; Schulman et al. 2017, PPO; Schulman et al. 2016, GAE).

Status: this file currently holds the learning logic as small pure functions (GAE, whitening, the
clipped policy and value losses), which rl_basics/ already uses on CartPole. The rollout/update loop
over language models is the next piece of work (see the README's status section).

Shapes: B = rollouts in the batch, T = response positions. Every tensor below is (B, T) and `mask` is
1.0 on real response tokens (or environment steps) and 0.0 on padding after the end.
"""

import torch


# -----------------------------------------------------------------------------
# learning logic: small pure functions that tests, rl_basics/ and the notebooks call

def masked_mean(x, mask, dim=None):
    """Mean of x over the entries where mask == 1 (over `dim`, or over everything)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x, mask, shift_mean=True):
    """(x - mean) / sqrt(var + 1e-8) over the masked entries, with the biased variance
    E[(x - mean)^2]. With shift_mean=False the mean is added back (used for rewards, whose
    sign carries meaning). Padding stays 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
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


def policy_loss(logp, old_logp, advantages, mask, clip_coef):
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise:

    ratio = pi(a|s) / pi_old(a|s) = exp(logp - old_logp)
    L = -E[min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)] = E[max(-A * ratio, -A * clip(ratio))]

    Also returns approx_kl = E[(ratio - 1) - log ratio] (Schulman's unbiased, always >= 0 "k3"
    estimator of KL(pi_old || pi)) and clipfrac = the fraction of tokens where the clip is active.
    """
    log_ratio = logp - old_logp  # (B, T)
    ratio = torch.exp(log_ratio)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
    loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
        clipfrac = masked_mean(((ratio - 1.0).abs() > clip_coef).float(), mask)
    return loss, approx_kl, clipfrac


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
