"""
sample.py -- sample from any model of this project: a GPT-2 name, a Hugging Face directory, or a stage's
checkpoint directory (which knows its tokenizer).

    python sample.py --init_from=gpt2 --prompt="The meaning of life is"
    python sample.py --init_from=out/toy/ppo --prompt="How do I brew tea?" --chat=True --num_samples=5

With --chat=True the prompt is wrapped in the dialogue template ("### Human: ...\\n### Assistant:") and
sampling stops at end-of-text, as the fine-tuned stages expect.
"""

from dataclasses import dataclass

import torch

from checkpoint import load_model
from configurator import at_least, between, parse_config, run_cli
from data.formats import format_prompt
from runtime import setup_runtime
from tokenizer import get_tokenizer


@dataclass
class SampleConfig:
    init_from: str = "gpt2"  # a GPT-2 name, a Hugging Face directory, or a checkpoint directory of this project
    prompt: str = "Hello, I'm a language model,"  # the text to continue
    chat: bool = False  # wrap the prompt in the dialogue template and stop at end-of-text
    num_samples: int = 3  # independent samples
    max_new_tokens: int = 64  # tokens generated per sample
    temperature: float = 1.0  # 0 = greedy
    top_k: int = None  # keep only the k most likely tokens (None or 0 = off)
    top_p: float = None  # keep the smallest set of tokens whose probability reaches p (0 = greedy)
    device: str = "auto"  # 'auto', 'cpu', 'cuda'
    dtype: str = "auto"  # autocast dtype
    seed: int = 1337


RANGES = {"num_samples": at_least(1), "temperature": at_least(0), "top_k": at_least(0), "top_p": between(0, 1, high_open=False)}


def main():
    config = parse_config(SampleConfig, ranges=RANGES)
    rt = setup_runtime(config.device, config.dtype, config.seed)
    model, tok_name, _ = load_model(config.init_from, stages=None, key="init_from")  # any model: a reward model too
    model.to(rt.device).eval()
    tok = get_tokenizer(tok_name)
    text = format_prompt(config.prompt) if config.chat else config.prompt
    idx = torch.tensor([tok.encode(text)] * config.num_samples, device=rt.device)  # (num_samples, T)
    with rt.autocast:
        out = model.generate(idx, config.max_new_tokens, temperature=config.temperature, top_k=config.top_k,
                             top_p=config.top_p, eos_token_id=tok.eot_id if config.chat else None, pad_token_id=tok.pad_id)
    for row in out[:, idx.shape[1]:].tolist():
        if config.chat and tok.eot_id in row:
            row = row[:row.index(tok.eot_id)]
        print(text + tok.decode(row))
        print("-" * 40)


if __name__ == "__main__":
    run_cli(main)
