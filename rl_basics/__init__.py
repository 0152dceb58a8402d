"""RL from first principles: bandits, grid worlds and CartPole, from tabular Q-learning to PPO.
See rl_basics/README.md; every algorithm file runs as `python -m rl_basics.<name>` from the repository root."""
