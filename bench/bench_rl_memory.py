"""
bench_rl_memory.py -- what PPO's fourth model costs: peak resident memory and time per iteration of ppo.py
and grpo.py (with the reward model, and with the verifier alone) on the toy world, from a demo run.

    python bench/bench_rl_memory.py out/demo-...     # a finished run of scripts/demo.sh (its data, sft, reward)

Each stage runs in a fresh process (its own peak: resource's RUSAGE_CHILDREN of a wrapper process that runs
only it) for `--iters` iterations of its toy config, with the periodic evaluation and samples off, into a
temporary directory that is deleted afterwards. Models held: PPO 4 (policy, reference, value model, reward
model), GRPO 3 (no value model), GRPO with the verifier 2 (no reward model either). At the toy geometry
the models are ~1M parameters each, so the peak is mostly the Python process and torch itself; the
difference between the rows is the models, their optimizer state and the activations of the update.
Seconds per iteration include the rollout, scoring and update (the whole stage's wall time, start-up
included, divided by the iterations: a comparison between the rows, not a per-iteration profile).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def peak_rss_mb(cmd):
    """(peak resident memory of cmd in MB, wall seconds), cmd run in a fresh wrapper process."""
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1]) / 1024, time.time() - t0  # ru_maxrss is in KB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo_dir", help="a finished run of scripts/demo.sh")
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    d = os.path.abspath(args.demo_dir)
    data = os.path.join(d, "data")
    common = [f"--sft_dir={d}/sft", f"--reward_dir={d}/reward", f"--prompts={data}/rl_prompts.jsonl",
              f"--eval_prompts={data}/eval_prompts.jsonl", f"--max_iters={args.iters}", f"--eval_interval={args.iters}",
              "--sample_interval=0"]
    rows = [("ppo (4 models)", "ppo.py", "config/ppo_toy.py", []),
            ("grpo, reward model (3 models)", "grpo.py", "config/grpo_toy.py", []),
            ("grpo, verifier on math (2 models)", "grpo.py", "config/grpo_toy.py", ["--reward=verifier", "--prompt_kinds=math"])]
    print(f"{args.iters} iterations each, 64 responses per iteration (toy configs), fresh process per row\n")
    print("| stage | peak resident memory (MB) | seconds per iteration (wall / iterations) |")
    print("| --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="bench-rl-") as tmp:
        for k, (name, script, config, extra) in enumerate(rows):
            cmd = [sys.executable, script, "--config", config, f"--out_dir={tmp}/{k}", *common, *extra]
            mb, seconds = peak_rss_mb(cmd)
            print(f"| {name} | {mb:.0f} | {seconds / args.iters:.2f} |", flush=True)


if __name__ == "__main__":
    main()
