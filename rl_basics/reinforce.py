"""
REINFORCE (Williams 1992), the Monte-Carlo policy gradient, with and without a learned baseline,
on CartPole (Sutton & Barto 2018, sections 13.3-13.4).

Play one episode with the policy pi_theta, then push up the log-probability of each action taken in
proportion to how much better than expected the rest of the episode went:

    G_t = sum_{k>=t} gamma^(k-t) R_{k+1}                                 the return from step t
    theta <- theta + alpha (G_t - b(S_t)) grad log pi_theta(A_t | S_t)    (S&B eq. 13.8 / 13.11)

Any baseline b that does not depend on the action leaves the gradient unbiased and can cut its
variance a lot; the natural one is a learned state value V_w(S_t), fitted to G_t by regression. This is
the ancestor of the value model in RLHF, where the advantage G_t - V(S_t) scores each token.

Deviations from the book: (1) the gamma^t factor of eq. 13.8 is dropped, as practically every
implementation does (with gamma = 0.99 it would all but mute the late steps of a long episode);
(2) Adam instead of plain SGD; (3) the losses are averaged over the episode's steps. CartPole's
500-step time limit is not part of the state, so the last steps of a 500-step episode see shorter
returns; with gamma = 0.99 this is a small bias, left in for simplicity (actor_critic.py bootstraps).

    python -m rl_basics.reinforce                     # both variants, ~40 s
    python -m rl_basics.reinforce --n_episodes=50 --out_dir=/tmp/rl
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from configurator import parse_config, run_cli
from rl_basics.envs import CartPole
from rl_basics.plot import moving_average, save_curves


@dataclass
class Config:
    n_episodes: int = 1000  # the most episodes to play
    target_return: float = 475.0  # stop once the mean return of the last 100 episodes reaches this
    gamma: float = 0.99  # discount
    lr: float = 3e-3  # alpha, the policy's Adam step size
    lr_value: float = 3e-3  # the baseline's Adam step size
    hidden: int = 64  # width of the two hidden layers of each MLP
    seed: int = 0
    out_dir: str = "out/rl_basics"  # where the PNG goes


def mlp(n_in, hidden, n_out):
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, n_out))


def discounted_returns(rewards, gamma):
    """G_t = R_{t+1} + gamma G_{t+1}, computed backwards from G_T = 0: (T,) -> (T,)."""
    G = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        G[t] = running
    return G


def train(cfg, baseline):
    """Returns the return of every episode played (at most cfg.n_episodes)."""
    torch.manual_seed(cfg.seed)
    env = CartPole()
    env.reset(seed=cfg.seed)
    policy = mlp(env.obs_dim, cfg.hidden, env.n_actions)  # logits of pi_theta(a | s)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    if baseline:
        value = mlp(env.obs_dim, cfg.hidden, 1)  # V_w(s)
        value_optimizer = torch.optim.Adam(value.parameters(), lr=cfg.lr_value)

    episode_returns = []
    for episode in range(cfg.n_episodes):
        # play one episode with the current policy, no gradients needed yet
        obs, _ = env.reset()
        observations, actions, rewards = [], [], []
        done = False
        while not done:
            with torch.no_grad():
                probs = torch.softmax(policy(torch.from_numpy(obs)), dim=-1)  # (n_actions,)
            a = int(torch.multinomial(probs, 1))
            observations.append(obs)
            actions.append(a)
            obs, r, terminated, truncated, _ = env.step(a)
            rewards.append(r)
            done = terminated or truncated
        episode_returns.append(sum(rewards))

        # one batched pass over the whole episode recomputes log pi(A_t | S_t) with gradients
        S = torch.from_numpy(np.stack(observations))  # (T, obs_dim)
        A = torch.tensor(actions)  # (T,)
        G = torch.from_numpy(discounted_returns(rewards, cfg.gamma)).float()  # (T,)
        logp = torch.log_softmax(policy(S), dim=-1)[torch.arange(len(A)), A]  # (T,)
        if baseline:
            V = value(S).squeeze(-1)  # (T,)
            # w <- w + alpha_w (G_t - V_w(S_t)) grad V_w(S_t): a regression of V on G
            value_loss = 0.5 * ((G - V) ** 2).mean()
            value_optimizer.zero_grad()
            value_loss.backward()
            value_optimizer.step()
            advantages = G - V.detach()  # (T,)
        else:
            advantages = G
        # theta <- theta + alpha (G_t - b(S_t)) grad log pi(A_t | S_t), written as a loss to minimise
        loss = -(advantages * logp).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        if len(episode_returns) >= 100 and np.mean(episode_returns[-100:]) >= cfg.target_return:
            break
    return episode_returns


def main():
    torch.set_num_threads(1)  # the networks are tiny: a second thread only adds waiting on a shared CPU
    cfg = parse_config(Config)
    print(cfg)
    curves = {}
    for name, baseline in [("REINFORCE", False), ("REINFORCE with baseline", True)]:
        curves[name] = train(cfg, baseline)
        average = moving_average(curves[name], 100)[-1]
        print(f"{name}: {len(curves[name])} episodes, mean return of the last 100: {average:.1f}")
    save_curves(f"{cfg.out_dir}/reinforce.png", [("episode return (mean of last 20)", curves)], "episode",
                f"REINFORCE on CartPole-v1, seed {cfg.seed}", smooth=20,
                hlines=[{f"target {cfg.target_return:g}": cfg.target_return}])


if __name__ == "__main__":
    run_cli(main)
