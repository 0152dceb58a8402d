"""
Multi-armed bandits on the 10-armed testbed: epsilon-greedy and UCB action selection with
sample-average value estimates (Sutton & Barto 2018, sections 2.2-2.4 and 2.7, Figures 2.2 and 2.4).

A bandit is RL with a single state: every step picks an arm a, gets a reward R ~ N(q*(a), 1), and
must trade exploiting the arm that looks best against exploring arms it knows little about. All
n_runs independent problems run at once as rows of (n_runs, k) arrays.

    python -m rl_basics.bandits                       # 2000 runs x 1000 steps, as in the book, ~4 s
    python -m rl_basics.bandits --n_runs=200 --out_dir=/tmp/rl
"""

from dataclasses import dataclass

import numpy as np

from configurator import parse_config, run_cli
from rl_basics.envs import Bandit
from rl_basics.plot import save_curves


@dataclass
class Config:
    n_runs: int = 2000  # independent testbed problems averaged (the book uses 2000)
    n_steps: int = 1000  # pulls per problem
    k: int = 10  # arms
    c: float = 2.0  # UCB's degree of exploration
    seed: int = 0
    out_dir: str = "out/rl_basics"  # where the PNG goes


def argmax_random_ties(x, rng):
    """argmax over the last axis with ties broken uniformly at random: (n_runs, k) -> (n_runs,).
    A maximal entry gets a random score in (0, 1), every other entry 0."""
    is_max = x == x.max(axis=1, keepdims=True)
    return (is_max * rng.uniform(1e-12, 1.0, x.shape)).argmax(axis=1)


def run_bandit(n_runs, n_steps, epsilon=0.0, c=None, k=10, seed=0):
    """epsilon-greedy (c=None) or UCB with constant c on n_runs testbed problems at once.
    Returns rewards (n_steps, n_runs) and whether the optimal arm was pulled (n_steps, n_runs).
    The same seed gives every method the same problems q*."""
    env = Bandit(k, n_runs)
    _, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed + 1)  # the agent's own randomness
    Q = np.zeros((n_runs, k))  # Q_t(a): the sample average of the rewards from arm a
    N = np.zeros((n_runs, k))  # N_t(a): how often arm a has been pulled
    rows = np.arange(n_runs)
    rewards, optimal = np.zeros((n_steps, n_runs)), np.zeros((n_steps, n_runs), dtype=bool)
    for t in range(1, n_steps + 1):
        if c is None:
            # epsilon-greedy: A_t = argmax_a Q_t(a) with probability 1 - epsilon, else a random arm
            explore = rng.random(n_runs) < epsilon
            A = np.where(explore, rng.integers(k, size=n_runs), argmax_random_ties(Q, rng))
        else:
            # UCB (eq. 2.10): A_t = argmax_a [Q_t(a) + c sqrt(ln t / N_t(a))]; an arm never pulled is
            # a maximising arm (its bonus is infinite)
            bonus = c * np.sqrt(np.log(t) / np.maximum(N, 1))
            A = argmax_random_ties(np.where(N > 0, Q + bonus, np.inf), rng)
        _, R, _, _, _ = env.step(A)
        N[rows, A] += 1
        # incremental sample average (eq. 2.3): Q_{n+1} = Q_n + (1/n) [R_n - Q_n]
        Q[rows, A] += (R - Q[rows, A]) / N[rows, A]
        rewards[t - 1], optimal[t - 1] = R, A == info["optimal_action"]
    return rewards, optimal


def main():
    cfg = parse_config(Config)
    print(cfg)
    methods = {"greedy (epsilon=0)": dict(epsilon=0.0), "epsilon=0.01": dict(epsilon=0.01),
               "epsilon=0.1": dict(epsilon=0.1), f"UCB c={cfg.c}": dict(c=cfg.c)}
    reward_curves, optimal_curves = {}, {}
    for name, kwargs in methods.items():
        rewards, optimal = run_bandit(cfg.n_runs, cfg.n_steps, k=cfg.k, seed=cfg.seed, **kwargs)
        reward_curves[name], optimal_curves[name] = rewards.mean(1), 100 * optimal.mean(1)  # (n_steps,)
        print(f"{name:20s} average reward {rewards.mean():.3f}, optimal action {100 * optimal.mean():.1f}%, "
              f"last 100 steps: {rewards[-100:].mean():.3f} and {100 * optimal[-100:].mean():.1f}%")
    save_curves(f"{cfg.out_dir}/bandits.png",
                [("average reward", reward_curves), ("% optimal action", optimal_curves)], "step",
                f"10-armed testbed, mean of {cfg.n_runs} runs (S&B Figures 2.2 and 2.4)")


if __name__ == "__main__":
    run_cli(main)
