import os
import sys

# the stage scripts and modules live at the top level of the repository
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import json  # noqa: E402
import subprocess  # noqa: E402
from dataclasses import dataclass  # noqa: E402


@dataclass
class StandInConfig:
    """What save_checkpoint stores as a checkpoint's config, for checkpoints the tests make by hand."""
    note: str = "a stand-in for a stage's config"


def write_records(path, records):
    """A JSONL file of records, one per line."""
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return path


def tiny_sft_checkpoint(d, texts, block_size=48, scalar_head_dir=None):
    """A char vocabulary covering the template and `texts` (d/vocab.json) and an untrained 1-layer GPT saved
    as an SFT checkpoint in d/sft; with scalar_head_dir, the same geometry with a scalar head and a unit
    reward normalisation there too (a stand-in reward model). Returns the tokenizer."""
    import torch
    from checkpoint import save_checkpoint
    from model import GPT, GPTConfig
    from tokenizer import CharTokenizer
    tok = CharTokenizer.from_texts(["### Human: ### Assistant:\n"] + list(texts))
    tok.save(str(d / "vocab.json"))
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=block_size, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16)
    (d / "sft").mkdir()
    save_checkpoint(str(d / "sft"), GPT(cfg), StandInConfig(), step=0, tokenizer=str(d / "vocab.json"), stage="sft")
    if scalar_head_dir is not None:
        (d / scalar_head_dir).mkdir()
        save_checkpoint(str(d / scalar_head_dir), GPT(GPTConfig(**{**cfg.__dict__, "scalar_head": True})), StandInConfig(),
                        step=0, tokenizer=str(d / "vocab.json"), stage="reward",
                        extra={"reward_norm": {"raw_mean": 0.0, "raw_std": 1.0, "n_samples": 0}})
    return tok


def run_stage(script, args, launcher=None, timeout=300):
    """python SCRIPT --key=value ... (args a dict or a list of flags), or under a launcher such as torchrun,
    in a subprocess with one thread: the CompletedProcess, its output captured."""
    flags = [f"--{k}={v}" for k, v in args.items()] if isinstance(args, dict) else list(args)
    cmd = (launcher or [sys.executable]) + [os.path.join(ROOT, script)] + flags
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
