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
