"""
Four environments written from scratch in numpy, with the Gymnasium API, so that nothing is installed:

    obs, info = env.reset(seed=None)
    obs, reward, terminated, truncated, info = env.step(action)

`terminated` means the MDP reached a terminal state (the value after it is 0); `truncated` means a
time limit cut the episode short (the state after it still has a value). `reset(seed=s)` re-seeds the
environment's generator `np_random`; `reset()` without a seed carries on with the current one.

- Bandit:        the 10-armed testbed (Sutton & Barto 2018, section 2.3), n_runs problems at once
- CliffWalking:  4x12 grid, -1 a step, -100 and back to the start on the cliff (S&B Example 6.6)
- FrozenLake:    4x4 slippery lake, reward 1 at the goal; its transition table in P[s][a]
- CartPole:      Gymnasium's CartPole-v1: same constants, Euler integration, thresholds, 500-step limit

The grid worlds expose their dynamics as P[s][a] = [(prob, next_state, reward, terminated), ...],
exactly as Gymnasium's toy-text environments do, so dynamic programming can read the model.
"""

import math

import numpy as np


class Bandit:
    """The k-armed testbed: q*(a) ~ N(0, 1) per arm, reward ~ N(q*(a), 1). Vectorised: row i of every
    array is an independent problem, so 2000 runs of the textbook are one (2000, 10) array."""

    def __init__(self, k=10, n_runs=1):
        self.n_states, self.n_actions, self.n_runs = 1, k, n_runs
        self.np_random = None

    def reset(self, seed=None):
        if seed is not None or self.np_random is None:
            self.np_random = np.random.default_rng(seed)
        self.q_star = self.np_random.normal(0.0, 1.0, (self.n_runs, self.n_actions))  # (n_runs, k)
        obs = np.zeros(self.n_runs, dtype=np.int64)  # a bandit has a single state
        return obs, {"optimal_action": self.q_star.argmax(1)}

    def step(self, a):
        # a: (n_runs,) one arm per problem; reward: (n_runs,)
        reward = self.np_random.normal(self.q_star[np.arange(self.n_runs), a], 1.0)
        done = np.zeros(self.n_runs, dtype=bool)  # never terminates, never truncates
        return np.zeros(self.n_runs, dtype=np.int64), reward, done, done, {}


class TabularEnv:
    """A finite MDP given by its table P[s][a] = [(prob, next_state, reward, terminated), ...]
    (Gymnasium's toy-text format). step() samples one entry of P[s][a]."""

    def __init__(self, P, start_state):
        self.P, self.start_state = P, start_state
        self.n_states, self.n_actions = len(P), len(P[0])
        self.np_random = None

    def reset(self, seed=None):
        if seed is not None or self.np_random is None:
            self.np_random = np.random.default_rng(seed)
        self.s = self.start_state
        return self.s, {"prob": 1.0}

    def step(self, a):
        # sample a transition by walking the cumulative probabilities (a categorical draw)
        u = self.np_random.random()
        for prob, s_next, reward, terminated in self.P[self.s][a]:
            u -= prob
            if u < 0:
                break
        self.s = s_next
        return s_next, reward, terminated, False, {"prob": prob}


def _move(row, col, d_row, d_col, rows, cols):
    """One step on a grid; walking into a wall leaves the agent where it is."""
    return min(max(row + d_row, 0), rows - 1), min(max(col + d_col, 0), cols - 1)


class CliffWalking(TabularEnv):
    """4x12 grid, start at (3, 0), goal at (3, 11), the cliff along (3, 1..10). Actions 0 up, 1 right,
    2 down, 3 left (Gymnasium's order). Every step costs -1; stepping into the cliff costs -100 and
    sends the agent back to the start without ending the episode; reaching the goal ends it."""

    rows, cols = 4, 12
    moves = [(-1, 0), (0, 1), (1, 0), (0, -1)]  # (d_row, d_col) of up, right, down, left

    def __init__(self):
        start, goal = (self.rows - 1) * self.cols, self.rows * self.cols - 1
        P = {}
        for s in range(self.rows * self.cols):
            row, col = divmod(s, self.cols)
            P[s] = {}
            for a, (d_row, d_col) in enumerate(self.moves):
                r2, c2 = _move(row, col, d_row, d_col, self.rows, self.cols)
                if r2 == self.rows - 1 and 0 < c2 < self.cols - 1:  # the cliff
                    P[s][a] = [(1.0, start, -100.0, False)]
                else:
                    s2 = r2 * self.cols + c2
                    P[s][a] = [(1.0, s2, -1.0, s2 == goal)]
        super().__init__(P, start)


class FrozenLake(TabularEnv):
    """The 4x4 slippery lake of FrozenLake-v1. S start, F frozen, H hole, G goal. Actions 0 left,
    1 down, 2 right, 3 up. The intended move and the two perpendicular ones happen with 1/3 each;
    walls keep the agent in place. Reward 1 on entering G, 0 otherwise; H and G end the episode
    (in P they are absorbing: every action returns (1.0, s, 0, True)). Gymnasium registers the env
    with a 100-step time limit; it is `max_episode_steps` here and step() applies it."""

    MAP = ["SFFF", "FHFH", "FFFH", "HFFG"]
    rows, cols = 4, 4
    moves = [(0, -1), (1, 0), (0, 1), (-1, 0)]  # (d_row, d_col) of left, down, right, up
    max_episode_steps = 100

    def __init__(self):
        P = {}
        for s in range(self.rows * self.cols):
            row, col = divmod(s, self.cols)
            P[s] = {}
            for a in range(4):
                if self.MAP[row][col] in "GH":
                    P[s][a] = [(1.0, s, 0.0, True)]
                    continue
                P[s][a] = []
                for b in ((a - 1) % 4, a, (a + 1) % 4):  # slip to either side, or go as intended
                    r2, c2 = _move(row, col, *self.moves[b], self.rows, self.cols)
                    letter = self.MAP[r2][c2]
                    P[s][a].append((1 / 3, r2 * self.cols + c2, float(letter == "G"), letter in "GH"))
        super().__init__(P, 0)

    def reset(self, seed=None):
        self.elapsed_steps = 0
        return super().reset(seed)

    def step(self, a):
        s_next, reward, terminated, _, info = super().step(a)
        self.elapsed_steps += 1
        return s_next, reward, terminated, self.elapsed_steps >= self.max_episode_steps, info


class CartPole:
    """CartPole-v1 (Barto, Sutton & Anderson 1983; Gymnasium's classic_control/cartpole.py), rewritten.
    State (x, x_dot, theta, theta_dot); action 0 pushes the cart left, 1 right, with force_mag.
    Reward +1 every step, the terminating step included. Terminated when |theta| > 12 degrees or
    |x| > 2.4; truncated after 500 steps (Gymnasium's TimeLimit wrapper, built in here)."""

    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    total_mass = masspole + masscart
    length = 0.5  # half the pole's length
    polemass_length = masspole * length
    force_mag = 10.0
    tau = 0.02  # seconds between state updates
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4
    max_episode_steps = 500
    obs_dim, n_actions = 4, 2

    def __init__(self):
        self.np_random, self.state = None, None

    def reset(self, seed=None):
        if seed is not None or self.np_random is None:
            self.np_random = np.random.default_rng(seed)
        self.state = self.np_random.uniform(-0.05, 0.05, size=(4,))  # float64, like Gymnasium
        self.elapsed_steps = 0
        return self.state.astype(np.float32), {}

    def step(self, action):
        x, x_dot, theta, theta_dot = self.state.tolist()
        force = self.force_mag if action == 1 else -self.force_mag
        costheta, sintheta = math.cos(theta), math.sin(theta)
        # equations of motion of the cart-pole (Florian 2007, "Correct equations for the dynamics
        # of the cart-pole system", with friction removed)
        temp = (force + self.polemass_length * theta_dot**2 * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta**2 / self.total_mass))
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        # explicit Euler: positions move with the old velocities
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        self.state = np.array((x, x_dot, theta, theta_dot), dtype=np.float64)
        self.elapsed_steps += 1

        terminated = bool(abs(x) > self.x_threshold or abs(theta) > self.theta_threshold_radians)
        truncated = self.elapsed_steps >= self.max_episode_steps
        return self.state.astype(np.float32), 1.0, terminated, truncated, {}
