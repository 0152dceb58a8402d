"""Every shipped config file parses against its stage's dataclass (no unknown keys, right types)."""

import glob
import os

import pytest

from configurator import parse_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "config", "*.py"))), ids=os.path.basename)
def test_config_file_parses(path):
    stage = os.path.basename(path).split("_")[0]
    module = __import__(stage)
    config_cls = {"sft": "SFTConfig", "reward": "RewardConfig", "ppo": "PPOConfig", "dpo": "DPOConfig",
                  "grpo": "GRPOConfig", "kto": "KTOConfig"}[stage]
    config = parse_config(getattr(module, config_cls), ["--config", path])
    assert config.out_dir.startswith("out/")


def test_the_verifier_config_is_the_toy_config_with_the_chosen_budget():
    """config/grpo_verifier_toy.py is config/grpo_toy.py plus what scripts/grpo_verifier_select.sh varied and measured
    (the reward, every kind sampled, the budget) and where it writes: a change to grpo_toy.py's other settings must
    reach it too, or it is no longer the setting the README's numbers are of."""
    import dataclasses

    from grpo import GRPOConfig

    toy, verifier = (dataclasses.asdict(parse_config(GRPOConfig, ["--config", os.path.join(ROOT, "config", name)]))
                     for name in ("grpo_toy.py", "grpo_verifier_toy.py"))
    differing = {key for key in toy if toy[key] != verifier[key]}
    assert differing == {"out_dir", "reward", "unverified", "reward_dir", "prompts_per_iter", "group_size",
                         "minibatch_size", "max_iters", "eval_interval", "sample_interval"}
    assert (verifier["reward"], verifier["unverified"]) == ("verifier", "zero")
    assert verifier["prompts_per_iter"] * verifier["group_size"] // verifier["minibatch_size"] == 4  # as grpo_toy's
