"""
Value iteration (Bellman 1957; Sutton & Barto 2018, section 4.4): dynamic programming with the model
P[s][a] known, which gives the true optimum that the learning algorithms are compared with.

    V_{k+1}(s) = max_a sum_{s', r} p(s', r | s, a) [r + gamma V_k(s')]        (S&B eq. 4.10)

Run to convergence this is the infinite-horizon optimum V*. Stopped after H sweeps from V_0 = 0 it is
exactly the optimum over H steps: V_H(s) = the best achievable expected reward within H steps. On
FrozenLake (reward 1 at the goal, gamma = 1) V(s) is a probability of reaching the goal: 0.82 from the
start with unlimited time, 0.74 within Gymnasium's 100-step limit, the figure usually quoted as
FrozenLake 4x4's optimum. On CliffWalking V*(start) = -13, the length of the path along the cliff.

    python -m rl_basics.value_iteration              # a second
    python -m rl_basics.value_iteration --out_dir=/tmp/rl
"""

from dataclasses import dataclass

import numpy as np

from configurator import parse_config, run_cli
from rl_basics.envs import CliffWalking, FrozenLake
from rl_basics.plot import save_curves


@dataclass
class Config:
    gamma: float = 1.0  # discount; both tasks are episodic and the quoted figures are undiscounted
    theta: float = 1e-10  # stop when a sweep changes no V(s) by more than this
    horizon: int = 100  # H: FrozenLake-v1's time limit
    out_dir: str = "out/rl_basics"  # where the PNG goes


def model_arrays(P):
    """The table P[s][a] = [(prob, next_state, reward, terminated), ...] as arrays:
    P_next (S, A, S): the probability of landing in s' and carrying on (0 when the step terminates,
    so no value is bootstrapped from a terminal state), and R (S, A): the expected reward."""
    S, A = len(P), len(P[0])
    P_next, R = np.zeros((S, A, S)), np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            for prob, s_next, reward, terminated in P[s][a]:
                R[s, a] += prob * reward
                P_next[s, a, s_next] += prob * (not terminated)
    return P_next, R


def value_iteration(P, gamma=1.0, theta=1e-10, max_sweeps=None):
    """Sweeps of eq. 4.10 until the largest change is below theta (or max_sweeps sweeps).
    Returns V (S,), Q (S, A) and every sweep's V_k, V_0 = 0 first (n_sweeps + 1, S)."""
    P_next, R = model_arrays(P)
    V = np.zeros(len(P))
    history = [V]
    while max_sweeps is None or len(history) <= max_sweeps:
        # Q(s, a) = sum_{s', r} p(s', r | s, a) [r + gamma V(s')]         (S, A)
        Q = R + gamma * P_next @ V
        V_new = Q.max(axis=1)
        history.append(V_new)
        converged = np.abs(V_new - V).max() < theta
        V = V_new
        if converged:
            break
    Q = R + gamma * P_next @ V
    return V, Q, np.array(history)


def evaluate_policy(P, pi, horizon, gamma=1.0):
    """Expected return of the deterministic policy pi (S,) within `horizon` steps, from every state:
    V_{h+1}(s) = sum_{s', r} p(s', r | s, pi(s)) [r + gamma V_h(s')], V_0 = 0 (S&B eq. 4.5, H times)."""
    P_next, R = model_arrays(P)
    states = np.arange(len(P))
    V = np.zeros(len(P))
    for _ in range(horizon):
        V = (R + gamma * P_next @ V)[states, pi]
    return V


def main():
    cfg = parse_config(Config)
    print(cfg)
    lake, cliff = FrozenLake(), CliffWalking()

    V, Q, history = value_iteration(lake.P, cfg.gamma, cfg.theta)
    pi = Q.argmax(axis=1)  # the greedy policy w.r.t. V*, stationary (S,)
    _, _, V_H = value_iteration(lake.P, cfg.gamma, theta=0.0, max_sweeps=cfg.horizon)
    print(f"FrozenLake: {len(history) - 1} sweeps; P(reach goal) from the start: {V[0]:.4f} with unlimited "
          f"time, {V_H[-1][0]:.4f} within {cfg.horizon} steps (optimal), "
          f"{evaluate_policy(lake.P, pi, cfg.horizon, cfg.gamma)[0]:.4f} within {cfg.horizon} steps with pi*")
    print("pi* (0 left, 1 down, 2 right, 3 up; holes and goal are terminal):")
    print(pi.reshape(lake.rows, lake.cols))

    V_cliff, _, cliff_history = value_iteration(cliff.P, cfg.gamma, cfg.theta)
    print(f"CliffWalking: {len(cliff_history) - 1} sweeps; V*(start) = {V_cliff[cliff.start_state]:.1f}")

    # V_k(start) against k: after k sweeps it is the best success probability within k steps
    save_curves(f"{cfg.out_dir}/value_iteration.png",
                [("V_k(start) = P(goal within k steps)", {"value iteration": history[1:, 0]})],
                "sweep k", "FrozenLake 4x4: value iteration from V_0 = 0",
                hlines=[{f"V* = {V[0]:.3f}": V[0], f"k = {cfg.horizon}: {V_H[-1][0]:.3f}": V_H[-1][0]}])


if __name__ == "__main__":
    run_cli(main)
