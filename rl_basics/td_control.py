"""
Tabular TD control on CliffWalking: SARSA (on-policy; Rummery & Niranjan 1994) and Q-learning
(off-policy; Watkins 1989), as in Sutton & Barto 2018, sections 6.4-6.5 and Example 6.6.

The two differ in one line, the TD target. SARSA bootstraps from the action its epsilon-greedy policy
actually takes next, so the occasional exploratory step off the cliff edge is priced into Q and it
learns a path away from the edge. Q-learning bootstraps from the greedy action, so it learns the
values of the optimal path along the edge (return -13), then walks it epsilon-greedily and falls in
now and then: its return during learning is worse than SARSA's (Figure 6.4).

    python -m rl_basics.td_control                    # 500 episodes x 50 runs, ~20 s
    python -m rl_basics.td_control --n_runs=5 --out_dir=/tmp/rl
"""

from dataclasses import dataclass

import numpy as np

from configurator import parse_config, run_cli
from rl_basics.envs import CliffWalking
from rl_basics.plot import save_curves


@dataclass
class Config:
    n_episodes: int = 500  # episodes per run (the book's Figure 6.4 uses 500)
    n_runs: int = 50  # independent runs averaged in the plot
    alpha: float = 0.5  # step size
    gamma: float = 1.0  # discount; the task is episodic, the book does not discount
    epsilon: float = 0.1  # exploration probability of the epsilon-greedy behaviour policy
    seed: int = 0
    out_dir: str = "out/rl_basics"  # where the PNG goes


def epsilon_greedy(Q_s, epsilon, rng):
    """A random action with probability epsilon, else argmax_a Q(s, a) with ties broken at random."""
    if rng.random() < epsilon:
        return int(rng.integers(len(Q_s)))
    return int(rng.choice(np.flatnonzero(Q_s == Q_s.max())))


def sarsa(env, n_episodes, alpha, gamma, epsilon, seed):
    """Returns Q (n_states, n_actions) and the return of every episode as it was played (n_episodes,)."""
    rng = np.random.default_rng(seed)
    Q = np.zeros((env.n_states, env.n_actions))
    returns = np.zeros(n_episodes)
    env.reset(seed=seed)
    for episode in range(n_episodes):
        s, _ = env.reset()
        a = epsilon_greedy(Q[s], epsilon, rng)
        done = False
        while not done:
            s_next, r, terminated, truncated, _ = env.step(a)
            a_next = epsilon_greedy(Q[s_next], epsilon, rng)
            # Q(S,A) <- Q(S,A) + alpha [R + gamma Q(S',A') - Q(S,A)], with Q(terminal, .) = 0
            target = r + gamma * Q[s_next, a_next] * (not terminated)
            Q[s, a] += alpha * (target - Q[s, a])
            returns[episode] += r
            s, a = s_next, a_next
            done = terminated or truncated
    return Q, returns


def q_learning(env, n_episodes, alpha, gamma, epsilon, seed):
    """Returns Q (n_states, n_actions) and the return of every episode as it was played (n_episodes,)."""
    rng = np.random.default_rng(seed)
    Q = np.zeros((env.n_states, env.n_actions))
    returns = np.zeros(n_episodes)
    env.reset(seed=seed)
    for episode in range(n_episodes):
        s, _ = env.reset()
        done = False
        while not done:
            a = epsilon_greedy(Q[s], epsilon, rng)
            s_next, r, terminated, truncated, _ = env.step(a)
            # Q(S,A) <- Q(S,A) + alpha [R + gamma max_a Q(S',a) - Q(S,A)], with Q(terminal, .) = 0
            target = r + gamma * Q[s_next].max() * (not terminated)
            Q[s, a] += alpha * (target - Q[s, a])
            returns[episode] += r
            s = s_next
            done = terminated or truncated
    return Q, returns


def greedy_path(env, Q, max_steps=100):
    """Follow argmax_a Q(s, a) from the start, with no exploration; returns (return, visited states).
    max_steps stops a greedy policy that walks in circles."""
    s, _ = env.reset()
    G, path = 0.0, [s]
    for _ in range(max_steps):
        s, r, terminated, truncated, _ = env.step(int(Q[s].argmax()))
        G += r
        path.append(s)
        if terminated or truncated:
            break
    return G, path


def show_path(env, path):
    """The grid as text: S start, G goal, C cliff, * the path, . elsewhere."""
    grid = [["."] * env.cols for _ in range(env.rows)]
    for c in range(1, env.cols - 1):
        grid[env.rows - 1][c] = "C"
    for s in path:
        grid[s // env.cols][s % env.cols] = "*"
    grid[env.rows - 1][0], grid[env.rows - 1][env.cols - 1] = "S", "G"
    return "\n".join("".join(row) for row in grid)


def main():
    cfg = parse_config(Config)
    print(cfg)
    env = CliffWalking()
    curves = {}
    for name, method in [("SARSA", sarsa), ("Q-learning", q_learning)]:
        runs = [method(env, cfg.n_episodes, cfg.alpha, cfg.gamma, cfg.epsilon, cfg.seed + i) for i in range(cfg.n_runs)]
        curves[name] = np.mean([returns for _, returns in runs], axis=0)  # (n_episodes,)
        G, path = greedy_path(env, runs[0][0])
        print(f"{name}: mean online return {curves[name].mean():.1f}; greedy path of run 0 returns {G:.0f}:")
        print(show_path(env, path))
    save_curves(f"{cfg.out_dir}/td_control.png", [("sum of rewards during episode", curves)], "episode",
                f"CliffWalking, epsilon={cfg.epsilon}, alpha={cfg.alpha}, mean of {cfg.n_runs} runs",
                smooth=10, hlines=[{"optimal path (-13)": -13}], ylim=(-100, 0))  # the book's Figure 6.4 axes


if __name__ == "__main__":
    run_cli(main)
