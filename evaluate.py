"""
evaluate.py -- the gold-judge table of the toy world for any set of checkpoints.

For each checkpoint, sample responses to the held-out evaluation prompts (disjoint from every training
prompt) and score them with the programmatic gold judge (data/toy/judge.py). Rates are measured on
samples at temperature 1 -- the policy that RLHF optimises is the sampling distribution, and greedy
decoding hides a policy's flaws by always picking its majority behaviour -- with `samples_per_prompt`
samples per prompt so the rates are stable; greedy decoding is reported beside them.

    python evaluate.py --checkpoints=out/toy/sft
    python evaluate.py --checkpoints=sft:out/toy/sft,ppo:out/toy/ppo --out_dir=out/toy/eval

Columns (see data/toy/judge.py for the exact definitions): score = mean gold score in [-1, 1];
well_formed; the helpful / harmless / honest axes; harmful_refusal and harmful_compliance on harmful
prompts; over_refusal on benign prompts; topic_correct, math_correct, unanswerable_idk per skill.
"""

import json
import os
from dataclasses import dataclass

import torch

from checkpoint import load_model
from configurator import parse_config, run_cli
from data.formats import load_prompts
from data.toy.judge import SUMMARY, format_table, judge, summarize
from runtime import setup_runtime
from sampling import generate_responses
from tokenizer import get_tokenizer


@dataclass
class EvalConfig:
    checkpoints: str = "out/toy/sft"  # comma-separated checkpoint dirs, each optionally named as name:dir
    eval_prompts: str = "data/toy/eval_prompts.jsonl"  # held-out prompts {"prompt", "kind"}
    samples_per_prompt: int = 4  # samples at `temperature` per prompt (the rates average over all of them)
    temperature: float = 1.0  # the sampling temperature the rates are measured at
    greedy: bool = True  # also report greedy decoding (temperature 0), one response per prompt
    max_new_tokens: int = 96  # response length limit; a response that does not end is malformed
    batch_size: int = 256  # prompts per generate() call
    out_dir: str = ""  # if set, write results.json and table.md there
    device: str = "auto"  # 'auto', 'cpu', 'cuda'
    dtype: str = "auto"  # autocast dtype for sampling
    seed: int = 1234


def parse_checkpoints(spec):
    """'a:out/x,out/y' -> [('a', 'out/x'), ('y', 'out/y')]"""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, path = item.rpartition(":") if ":" in item else ("", "", item)
        out.append((name or os.path.basename(os.path.normpath(path)), path))
    return out


def judge_samples(model, tok, prompt_records, config, rt, temperature, n):
    """Sample n responses per prompt at `temperature` and return the gold judge's verdicts."""
    prompts = [r["prompt"] for r in prompt_records for _ in range(n)]
    responses = generate_responses(model, tok, prompts, config.max_new_tokens, temperature=temperature,
                                   batch_size=config.batch_size, device=rt.device, autocast=rt.autocast)
    return [judge(p, text, ended) for p, (text, ended) in zip(prompts, responses)]


def main():
    config = parse_config(EvalConfig)
    rt = setup_runtime(config.device, config.dtype, config.seed)
    prompt_records = load_prompts(config.eval_prompts)
    rows = {}
    for name, path in parse_checkpoints(config.checkpoints):
        model, tok_name, _ = load_model(path)
        model.to(rt.device).eval()
        tok = get_tokenizer(tok_name)
        torch.manual_seed(config.seed)
        rows[f"{name} (T={config.temperature:g})"] = summarize(
            judge_samples(model, tok, prompt_records, config, rt, config.temperature, config.samples_per_prompt))
        if config.greedy:
            rows[f"{name} (greedy)"] = summarize(judge_samples(model, tok, prompt_records, config, rt, 0.0, 1))
    table = format_table(rows)
    print(table)
    print("\n" + "\n".join(f"- {k}: {desc}" for k, (desc, _, _) in SUMMARY.items()))
    if config.out_dir:
        os.makedirs(config.out_dir, exist_ok=True)
        with open(os.path.join(config.out_dir, "table.md"), "w") as f:
            f.write(table + "\n")
        with open(os.path.join(config.out_dir, "results.json"), "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    run_cli(main)
