"""Tests of rl_basics/: the environments against Gymnasium's definitions and hand-worked steps, and
each algorithm against a published result (Sutton & Barto 2018; FrozenLake's quoted optimum) or a
target that does not come from the code under test. Deterministic: everything is seeded."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ppo
from rl_basics import actor_critic, bandits, reinforce, td_control, value_iteration
from rl_basics.envs import Bandit, CartPole, CliffWalking, FrozenLake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def one_thread():
    """The CartPole networks are tiny; on a shared CPU a second intra-op thread only adds waiting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -----------------------------------------------------------------------------
# environments


def test_gymnasium_api():
    for env in [FrozenLake(), CliffWalking(), CartPole(), Bandit(n_runs=3)]:
        obs, info = env.reset(seed=0)
        assert isinstance(info, dict)
        out = env.step(np.zeros(3, dtype=int) if isinstance(env, Bandit) else 0)
        assert len(out) == 5  # obs, reward, terminated, truncated, info
    assert (FrozenLake().n_states, FrozenLake().n_actions) == (16, 4)
    assert (CliffWalking().n_states, CliffWalking().n_actions) == (48, 4)
    assert (CartPole.obs_dim, CartPole.n_actions) == (4, 2)
    assert (Bandit().n_states, Bandit().n_actions) == (1, 10)


def test_frozenlake_table():
    P = FrozenLake().P
    for s in range(16):
        for a in range(4):
            assert math.isclose(sum(prob for prob, *_ in P[s][a]), 1.0)
    # worked by hand on SFFF/FHFH/FFFH/HFFG, actions 0 left 1 down 2 right 3 up: from state 14 (row 3,
    # col 2) "right" slips down (a wall: stay), goes right (the goal) or slips up (state 10)
    third = 1 / 3
    assert P[14][2] == [(third, 14, 0.0, False), (third, 15, 1.0, True), (third, 10, 0.0, False)]
    # from the start, "left" slips up (wall), goes left (wall) or slips down to state 4
    assert P[0][0] == [(third, 0, 0.0, False), (third, 0, 0.0, False), (third, 4, 0.0, False)]
    # from state 1, "down" can fall into the hole at state 5, which ends the episode with reward 0
    assert (third, 5, 0.0, True) in P[1][1]
    for terminal in [5, 7, 11, 12, 15]:  # the holes and the goal are absorbing
        assert all(P[terminal][a] == [(1.0, terminal, 0.0, True)] for a in range(4))


def test_frozenlake_time_limit():
    env = FrozenLake()
    env.reset(seed=0)
    env.P = {s: {a: [(1.0, s, 0.0, False)] for a in range(4)} for s in range(16)}  # never ends by itself
    truncations = [env.step(0)[3] for _ in range(100)]
    assert truncations == [False] * 99 + [True]


def test_cliffwalking_dynamics():
    env = CliffWalking()
    start, goal = 36, 47  # (3, 0) and (3, 11) on the 4x12 grid
    s, _ = env.reset(seed=0)
    assert s == start
    assert env.step(1)[:3] == (start, -100.0, False)  # right, into the cliff: -100, back to the start
    assert env.step(0)[:3] == (24, -1.0, False)  # up
    assert env.P[35][2] == [(1.0, goal, -1.0, True)]  # down from (2, 11) reaches the goal


def test_cartpole_constants():
    # Gymnasium's CartPole-v1 (classic_control/cartpole.py and its registration)
    assert (CartPole.gravity, CartPole.masscart, CartPole.masspole) == (9.8, 1.0, 0.1)
    assert (CartPole.length, CartPole.force_mag, CartPole.tau) == (0.5, 10.0, 0.02)
    assert math.isclose(CartPole.theta_threshold_radians, math.radians(12))
    assert (CartPole.x_threshold, CartPole.max_episode_steps) == (2.4, 500)


def test_cartpole_first_steps_by_hand():
    env = CartPole()
    env.reset(seed=0)
    env.state = np.zeros(4)
    # pushing right from rest, worked by hand: temp = F / (m_c + m_p) = 100/11,
    # theta_acc = -temp / (l (4/3 - m_p / (m_c + m_p))) = -(100/11) / (41/66) = -600/41,
    # x_acc = temp - m_p l theta_acc / (m_c + m_p) = 400/41
    obs, reward, terminated, truncated, _ = env.step(1)
    np.testing.assert_allclose(env.state, [0.0, 0.02 * 400 / 41, 0.0, -0.02 * 600 / 41], rtol=1e-12)
    assert obs.dtype == np.float32 and (reward, terminated, truncated) == (1.0, False, False)
    # explicit Euler: the position moves with the velocity from before the step
    env.step(1)
    assert math.isclose(env.state[0], 0.02 * (0.02 * 400 / 41), rel_tol=1e-12)
    assert math.isclose(env.state[2], 0.02 * (-0.02 * 600 / 41), rel_tol=1e-12)


def test_cartpole_seeding_matches_gymnasium():
    # Gymnasium's docstring: reset(seed=123, options={"low": -0.1, "high": 0.1}) gives
    # [0.03647037, -0.0892358, -0.05592803, -0.06312564]; the default bounds +-0.05 halve it
    obs, _ = CartPole().reset(seed=123)
    np.testing.assert_allclose(2 * obs, [0.03647037, -0.0892358, -0.05592803, -0.06312564], atol=1e-7)


def test_cartpole_termination_and_truncation():
    env = CartPole()
    env.reset(seed=0)
    env.state = np.array([0.0, 0.0, math.radians(12) - 1e-4, 1.0])  # about to pass 12 degrees
    _, reward, terminated, truncated, _ = env.step(1)
    assert (reward, terminated, truncated) == (1.0, True, False)  # the terminating step pays 1 too
    env.reset(seed=0)
    env.elapsed_steps = 499
    assert env.step(0)[2:4] == (False, True)  # the 500th step is truncated


# -----------------------------------------------------------------------------
# value iteration


def test_value_iteration_one_sweep_by_hand():
    # after one sweep V_1(s) = the best chance of reaching the goal in one step: only state 14 is next
    # to the goal, and from it "right" (or "down", slipping right) gets there with probability 1/3
    _, _, history = value_iteration.value_iteration(FrozenLake().P, max_sweeps=1)
    expected = np.zeros(16)
    expected[14] = 1 / 3
    np.testing.assert_allclose(history[1], expected)


def test_value_iteration_frozenlake_optimum():
    P = FrozenLake().P
    V, Q, _ = value_iteration.value_iteration(P, gamma=1.0)
    assert round(V[0], 2) == 0.82  # unlimited time
    # the published optimum of FrozenLake 4x4 is a success rate of 0.74 under the 100-step limit:
    # finite-horizon value iteration (100 sweeps from V_0 = 0) ...
    _, _, V_H = value_iteration.value_iteration(P, gamma=1.0, theta=0.0, max_sweeps=100)
    assert round(V_H[100][0], 2) == 0.74
    # ... and the stationary optimal policy, evaluated over 100 steps
    pi = Q.argmax(axis=1)
    assert round(value_iteration.evaluate_policy(P, pi, horizon=100)[0], 2) == 0.74
    # ... and the same policy played in the environment, whose step() samples P and stops at 100 steps
    env = FrozenLake()
    env.reset(seed=0)
    successes = 0
    n_episodes = 4000
    for _ in range(n_episodes):
        s, _ = env.reset()
        done = False
        while not done:
            s, reward, terminated, truncated, _ = env.step(int(pi[s]))
            done = terminated or truncated
        successes += reward
    assert abs(successes / n_episodes - 0.74) < 0.025  # 3.6 standard errors


def test_value_iteration_cliffwalking_optimum():
    V, _, _ = value_iteration.value_iteration(CliffWalking().P, gamma=1.0)
    assert V[36] == -13.0  # up, 11 steps right along the cliff, down: 13 steps of -1


# -----------------------------------------------------------------------------
# Q-learning and SARSA on the cliff (Sutton & Barto, Example 6.6, epsilon = 0.1, alpha = 0.5)


def test_cliffwalking_q_learning_vs_sarsa():
    env = CliffWalking()
    cfg = dict(n_episodes=500, alpha=0.5, gamma=1.0, epsilon=0.1)
    Q_q, _ = td_control.q_learning(env, **cfg, seed=0)
    Q_s, _ = td_control.sarsa(env, **cfg, seed=0)
    G_q, path_q = td_control.greedy_path(env, Q_q)
    G_s, path_s = td_control.greedy_path(env, Q_s)
    # Q-learning learns the optimal path, along the edge of the cliff (row 2)
    assert G_q == -13 and all(s // 12 == 2 for s in path_q[1:-1])
    # SARSA learns the safe path, by the top row: 3 up, 11 right, 3 down, never beside the cliff
    assert G_s == -17 and not any(s // 12 == 2 and 0 < s % 12 < 11 for s in path_s)
    # online, exploring with epsilon = 0.1, SARSA does better: Q-learning falls off the cliff now and then
    online_q = np.mean([td_control.q_learning(env, **cfg, seed=i)[1].mean() for i in range(3)])
    online_s = np.mean([td_control.sarsa(env, **cfg, seed=i)[1].mean() for i in range(3)])
    assert online_s > online_q
    assert online_s < -13 and online_q < -13  # neither gets the optimum while exploring


# -----------------------------------------------------------------------------
# bandits (Sutton & Barto, Figures 2.2 and 2.4: 2000 runs of 1000 steps)


def test_bandits_textbook_figures():
    runs = {name: bandits.run_bandit(2000, 1000, seed=0, **kwargs)
            for name, kwargs in [("greedy", dict(epsilon=0.0)), ("eps0.01", dict(epsilon=0.01)),
                                 ("eps0.1", dict(epsilon=0.1)), ("ucb", dict(c=2.0))]}
    reward = {name: rewards.mean() for name, (rewards, optimal) in runs.items()}
    # Figure 2.2: over 1000 steps, epsilon = 0.1 > epsilon = 0.01 > greedy in average reward
    assert reward["eps0.1"] > reward["eps0.01"] > reward["greedy"]
    # "the greedy method ... achieved a reward-per-step of only about 1 ... found the optimal action in
    # only approximately one-third of the tasks" (section 2.3)
    rewards, optimal = runs["greedy"]
    assert 0.9 < rewards[-100:].mean() < 1.1 and 0.28 < optimal[-100:].mean() < 0.40
    # Figure 2.4: UCB with c = 2 beats epsilon-greedy with epsilon = 0.1
    assert reward["ucb"] > reward["eps0.1"]
    # and nothing beats always pulling the best arm: E[max of 10 N(0, 1)] ~ 1.54
    best = np.random.default_rng(1).normal(size=(200_000, 10)).max(1).mean()
    assert max(reward.values()) < best


# -----------------------------------------------------------------------------
# REINFORCE and actor-critic on CartPole


def test_discounted_returns_by_hand():
    np.testing.assert_allclose(reinforce.discounted_returns([1.0, 1.0, 1.0], 0.5), [1.75, 1.5, 1.0])


def test_reinforce_with_baseline_solves_cartpole(one_thread):
    # "solved": a mean return >= 475 over 100 consecutive episodes (CartPole-v1's reward threshold)
    cfg = reinforce.Config(seed=0, n_episodes=1000)
    episode_returns = reinforce.train(cfg, baseline=True)
    assert len(episode_returns) <= 1000 and np.mean(episode_returns[-100:]) >= 475


def test_actor_critic_uses_ppo_functions():
    for name in ["compute_gae", "masked_whiten", "policy_loss", "value_loss", "explained_variance"]:
        assert getattr(actor_critic, name) is getattr(ppo, name)


def test_actor_critic_rollout_rows_and_bootstrap(one_thread):
    torch.manual_seed(0)
    policy, critic = reinforce.mlp(4, 8, 2), reinforce.mlp(4, 8, 1)
    envs = [CartPole(), CartPole()]
    envs[0].max_episode_steps, envs[1].max_episode_steps = 5, 3  # both end by the time limit
    for b, env in enumerate(envs):
        env.reset(seed=b)
    gamma, reward_scale = 0.9, 0.01
    batch = actor_critic.rollout(envs, policy, critic, gamma, reward_scale)
    assert batch["obs"].shape == (2, 5, 4)
    np.testing.assert_array_equal(batch["mask"], [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    # each row's last real step is bootstrapped with gamma V(s_T), the state the time limit cut off
    for b, T in [(0, 5), (1, 3)]:
        V_T = critic(torch.tensor(envs[b].state, dtype=torch.float32)).item()
        assert math.isclose(batch["rewards"][b, T - 1].item(), reward_scale + gamma * V_T, rel_tol=1e-5)
        np.testing.assert_allclose(batch["rewards"][b, :T - 1], reward_scale)
    assert batch["rewards"][1, 3:].abs().sum() == 0


def test_actor_critic_solves_cartpole(one_thread):
    episode_returns = actor_critic.train(actor_critic.Config(seed=0, n_iterations=150))
    assert np.mean(episode_returns[-100:]) >= 475


# -----------------------------------------------------------------------------
# every script runs, seeded, and writes its PNG to --out_dir


@pytest.mark.parametrize("name, flags", [
    ("bandits", ["--n_runs=20", "--n_steps=50"]),
    ("td_control", ["--n_runs=1", "--n_episodes=20"]),
    ("value_iteration", []),
    ("reinforce", ["--n_episodes=3"]),
    ("actor_critic", ["--n_iterations=2", "--n_envs=2"]),
])
def test_script_smoke(tmp_path, name, flags):
    out_dir = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", f"rl_basics.{name}", f"--out_dir={out_dir}", *flags],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with open(out_dir / f"{name}.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_script_rejects_unknown_key():
    result = subprocess.run([sys.executable, "-m", "rl_basics.td_control", "--alhpa=0.1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "alpha" in result.stderr
