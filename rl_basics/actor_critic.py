"""
Actor-critic with Generalised Advantage Estimation (Schulman et al. 2016) and PPO's clipped objective
(Schulman et al. 2017) on CartPole, built from the very functions that ../ppo.py uses on language
models: compute_gae, masked_whiten, policy_loss, value_loss, explained_variance. Only the environment
differs.

    games                                   language (ppo.py)
    one CartPole episode = one row (B, T)   one sampled response = one row (B, T)
    mask: 1 while the pole is up            mask: 1 on response tokens, 0 on padding after EOS
    critic V(s_t)                           value model V(prefix_t)
    reward 1 every step                     reward model's score at the last token (minus a KL term)

Each iteration: play B episodes in lockstep (a row each, padded to the longest), score every step with
the critic, turn rewards and values into advantages with GAE, whiten them, and take n_epochs passes of
minibatch steps on the clipped policy and value losses (the equations are above the calls below).

Logged every iteration: env/reward_mean (mean return of this rollout's episodes), loss/policy and
loss/value (the last minibatch's clipped losses), ppo/approx_kl (the k3 estimate of KL(pi_old || pi)),
ppo/clipfrac (the fraction of steps where the ratio was clipped) and ppo/explained_variance
(1 - Var[returns - V] / Var[returns] before the update: 1 is a perfect critic, 0 no better than a
constant).

Deviations from the papers: separate actor and critic networks trained by one optimizer (as ppo.py's
policy and value model), not a shared trunk; no entropy bonus; rewards scaled by reward_scale = 0.01 so
that returns are O(1) like a reward model's scores (with raw returns up to ~100 the critic, stepping at
lr, explained none of their variance for ~100 iterations); episodes cut by the time limit are
bootstrapped.

    python -m rl_basics.actor_critic                  # ~30 s
    python -m rl_basics.actor_critic --n_iterations=2 --out_dir=/tmp/rl
"""

from dataclasses import dataclass

import numpy as np
import torch

from configurator import parse_config, run_cli
from ppo import compute_gae, explained_variance, masked_whiten, policy_loss, value_loss
from rl_basics.envs import CartPole
from rl_basics.plot import moving_average, save_curves
from rl_basics.reinforce import mlp


@dataclass
class Config:
    n_iterations: int = 200  # the most rollout-then-update rounds
    target_return: float = 475.0  # stop once the mean return of the last 100 episodes reaches this
    n_envs: int = 8  # B: episodes per rollout, played in lockstep, one row each
    gamma: float = 0.99  # discount
    lam: float = 0.95  # GAE's lambda: 0 is the one-step TD error, 1 the Monte-Carlo return minus V
    lr: float = 1e-3  # Adam step size for actor and critic
    n_epochs: int = 4  # passes over each rollout
    n_minibatches: int = 2  # minibatches of rows per pass
    clip_coef: float = 0.2  # epsilon of the clipped ratio
    clip_coef_vf: float = 0.2  # clip range of the value update, in units of the scaled return
    reward_scale: float = 0.01  # rewards are multiplied by this so returns are O(1), like RLHF's scores
    vf_coef: float = 0.5  # weight of the value loss
    max_grad_norm: float = 0.5  # gradient clipping
    hidden: int = 64  # width of the two hidden layers of each MLP
    seed: int = 0
    out_dir: str = "out/rl_basics"  # where the PNG goes


@torch.no_grad()
def rollout(envs, policy, critic, gamma, reward_scale):
    """One episode per env, in lockstep. Returns a dict of tensors: obs (B, T, obs_dim), and actions,
    logp, values, rewards, mask (B, T); mask is 1 on the steps that happened, 0 on padding."""
    B = len(envs)
    obs = np.stack([env.reset()[0] for env in envs])  # (B, obs_dim)
    alive = np.ones(B, dtype=bool)
    steps = []
    truncated_at = []  # (row, step, final obs) of episodes cut by the time limit
    while alive.any():
        S = torch.tensor(obs)  # a copy: obs is overwritten in place below
        dist = torch.distributions.Categorical(logits=policy(S))
        A = dist.sample()  # (B,)
        rewards = np.zeros(B, dtype=np.float32)  # (B,)
        mask = alive.astype(np.float32)
        for b in np.flatnonzero(alive):
            obs[b], rewards[b], terminated, truncated, _ = envs[b].step(int(A[b]))
            if truncated and not terminated:
                truncated_at.append((b, len(steps), obs[b].copy()))
            alive[b] = not (terminated or truncated)
        steps.append((S, A, dist.log_prob(A), critic(S).squeeze(-1), torch.from_numpy(rewards * reward_scale),
                      torch.from_numpy(mask)))
    batch = {k: torch.stack(v, dim=1) for k, v in
             zip(["obs", "actions", "logp", "values", "rewards", "mask"], zip(*steps))}
    # compute_gae takes the value after a row's last step as 0 (the episode ended). That is right when
    # the pole fell, but an episode cut at 500 steps would have gone on: bootstrap r_T + gamma V(s_T).
    for b, t, final_obs in truncated_at:
        batch["rewards"][b, t] += gamma * critic(torch.from_numpy(final_obs)).item()
    return batch


def train(cfg):
    """Returns the return of every episode played."""
    torch.manual_seed(cfg.seed)
    envs = [CartPole() for _ in range(cfg.n_envs)]
    for b, env in enumerate(envs):
        env.reset(seed=cfg.seed * 1000 + b)
    policy = mlp(CartPole.obs_dim, cfg.hidden, CartPole.n_actions)  # the actor: logits of pi(a | s)
    critic = mlp(CartPole.obs_dim, cfg.hidden, 1)  # V(s)
    optimizer = torch.optim.Adam([*policy.parameters(), *critic.parameters()], lr=cfg.lr)

    episode_returns = []
    for iteration in range(cfg.n_iterations):
        batch = rollout(envs, policy, critic, cfg.gamma, cfg.reward_scale)
        mask = batch["mask"]  # (B, T)
        episode_returns += mask.sum(1).tolist()  # CartPole pays 1 a step
        # GAE (Schulman et al. 2016, eq. 16): delta_t = r_t + gamma V(s_{t+1}) - V(s_t),
        # A_t = sum_l (gamma lam)^l delta_{t+l}; the critic's targets are returns = A_t + V(s_t)
        advantages, returns = compute_gae(batch["rewards"], batch["values"], mask, cfg.gamma, cfg.lam)
        advantages = masked_whiten(advantages, mask)  # (B, T), zero mean and unit variance on real steps
        ev = explained_variance(batch["values"], returns, mask)  # how well the critic predicted the returns

        for epoch in range(cfg.n_epochs):
            for rows in torch.randperm(cfg.n_envs).chunk(cfg.n_minibatches):
                mb_obs, mb_mask = batch["obs"][rows], mask[rows]  # (mb, T, obs_dim), (mb, T)
                logits = policy(mb_obs)  # (mb, T, n_actions)
                logp = torch.log_softmax(logits, -1).gather(-1, batch["actions"][rows].unsqueeze(-1)).squeeze(-1)
                # PPO (Schulman et al. 2017, eq. 7): ratio = pi(a|s) / pi_old(a|s),
                # L = -E[min(ratio A, clip(ratio, 1 - clip_coef, 1 + clip_coef) A)]
                pg_loss, approx_kl, clipfrac = policy_loss(logp, batch["logp"][rows], advantages[rows], mb_mask,
                                                           cfg.clip_coef)
                values = critic(mb_obs).squeeze(-1)  # (mb, T)
                # L_V = 1/2 E[max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)]
                vf_loss, _ = value_loss(values, batch["values"][rows], returns[rows], mb_mask, cfg.clip_coef_vf)
                loss = pg_loss + cfg.vf_coef * vf_loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_([*policy.parameters(), *critic.parameters()], cfg.max_grad_norm)
                optimizer.step()

        print(f"iter {iteration:3d} | env/reward_mean {mask.sum(1).mean():6.1f} | loss/policy {pg_loss:+.4f} | "
              f"loss/value {vf_loss:8.3f} | ppo/approx_kl {approx_kl:.4f} | ppo/clipfrac {clipfrac:.3f} | "
              f"ppo/explained_variance {ev:+.3f}")
        if len(episode_returns) >= 100 and np.mean(episode_returns[-100:]) >= cfg.target_return:
            break
    return episode_returns


def main():
    torch.set_num_threads(1)  # the networks are tiny: a second thread only adds waiting on a shared CPU
    cfg = parse_config(Config)
    print(cfg)
    episode_returns = train(cfg)
    print(f"{len(episode_returns)} episodes, mean return of the last 100: "
          f"{moving_average(episode_returns, 100)[-1]:.1f}")
    save_curves(f"{cfg.out_dir}/actor_critic.png",
                [("episode return (mean of last 20)", {"actor-critic, GAE + PPO clip": episode_returns})],
                "episode", f"PPO on CartPole-v1, seed {cfg.seed}", smooth=20,
                hlines=[{f"target {cfg.target_return:g}": cfg.target_return}])


if __name__ == "__main__":
    run_cli(main)
