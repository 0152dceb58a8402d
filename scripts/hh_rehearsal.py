"""
hh_rehearsal.py -- the GPT-2 / HH-RLHF path rehearsed at GPT-2-small size on CPU, offline: every
config/*_gpt2_hh.py stage after stage on an HH-shaped data set the script makes, from a randomly initialised
GPT-2-small saved in the Hugging Face layout, each stage for a few steps with its batch sizes lowered by flags
only. It proves that the configs chain (each stage loads the checkpoint the one before handed on), that
prompts and conversations past GPT-2's 1024 tokens are skipped as the configs say (skip_long), and what each
stage costs; the numbers it trains to mean nothing.

    python scripts/hh_rehearsal.py OUT_DIR            # never overwrites: OUT_DIR must not exist
    python scripts/hh_rehearsal.py OUT_DIR --short    # fewer, shorter conversations (the test suite's version)

The data: raw HH-RLHF files (<subset>/<split>.jsonl, {"chosen", "rejected"} transcripts of "\\n\\nHuman: ..."
and "\\n\\nAssistant: ..." turns, one to four exchanges, chosen and rejected differing in the last answer, a
tenth of them past 1024 tokens), converted by data/hh_rlhf/prepare.py --local_dir --judge_halves exactly as the
real files would be. Then SFT, the reward model (on the policy half) and the judge reward model (on the judge
half), PPO, GRPO, DPO, KTO, and evaluate.py without a gold judge (base row: the random GPT-2 itself).

Printed per stage: wall seconds, peak resident memory (each stage a fresh process; resource's
RUSAGE_CHILDREN of a wrapper that runs only it), the median seconds per training step, tokens per second
(PPO, GRPO: their perf/tokens_per_s, response tokens sampled and trained on; the others: sequences per step x
the mean length of their data's sequences / seconds per step), and the checkpoint it handed on.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
WORDS = ("the a to and of in is it you that for on with can how what do i my be are this your have not as at "
         "or if will but about so there would some like just they make good time people want know help need "
         "water money home work food dog cat child car house phone book friend doctor school garden recipe "
         "bread coffee weather city music movie game computer question answer problem idea plan way place").split()


def sentence(rng, n_words):
    return " ".join(rng.choice(WORDS) for _ in range(n_words)).capitalize() + "."


def transcript_pair(rng, long):
    """An HH-RLHF record: chosen and rejected transcripts sharing every turn but the last answer."""
    turns, words = (4, (150, 250)) if long else (rng.randint(1, 4), (6, 30))  # a long one: ~2000 tokens
    text = ""
    for t in range(turns):
        text += f"\n\nHuman: {sentence(rng, rng.randint(*words))}"
        if t < turns - 1:
            text += f"\n\nAssistant: {sentence(rng, rng.randint(*words))}"
    return {"chosen": text + f"\n\nAssistant: {sentence(rng, rng.randint(5, 25))}",
            "rejected": text + f"\n\nAssistant: {sentence(rng, rng.randint(5, 25))}"}


def make_raw_data(raw_dir, n_train, n_test, seed=0):
    rng = random.Random(seed)
    for subset in ("helpful-base", "harmless-base"):
        os.makedirs(os.path.join(raw_dir, subset))
        for split, n in (("train", n_train), ("test", n_test)):
            with open(os.path.join(raw_dir, subset, f"{split}.jsonl"), "w") as f:
                for i in range(n):
                    f.write(json.dumps(transcript_pair(rng, long=i % 20 in (9, 14))) + "\n")  # odd and even: long ones in both halves


def run(name, cmd, out):
    """Run one stage in a fresh wrapper process: (wall seconds, peak RSS in MB); its output in out/NAME.log."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    with open(os.path.join(out, f"{name}.log"), "w") as f:
        f.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({' '.join(cmd[:3])} ...):\n{proc.stderr[-3000:]}")
    peak = [line for line in proc.stdout.splitlines() if line.startswith("peak_rss_kb")][-1].split()[1]
    return time.time() - t0, int(peak) / 1024


def mean_sequence_tokens(path, block_size=1024):
    """Mean tokens of the sequences a stage reads from a data file (prompt + response + end-of-text, the ones
    that fit): SFT demonstrations, or both responses of each preference pair."""
    from data.formats import format_prompt, format_response, read_jsonl
    from tokenizer import get_tokenizer
    tok = get_tokenizer("gpt2")
    lengths = [len(tok.encode(format_prompt(r["prompt"]))) + len(tok.encode(format_response(r[key]))) + 1
               for r in read_jsonl(path) for key in ("response", "chosen", "rejected") if key in r]
    fitting = [n for n in lengths if n <= block_size + 1]
    return sum(fitting) / len(fitting)


def step_figures(run_dir, sequences_per_step=None, data_path=None):
    """(median seconds per training step, tokens per second): PPO and GRPO log the latter (response tokens
    sampled and trained on); for the other stages it is sequences per step x their data's mean length / s per step."""
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    steps = sorted(r["time_per_step_s"] for r in rows if "time_per_step_s" in r)
    per_step = steps[len(steps) // 2] if steps else None
    logged = [r["perf/tokens_per_s"] for r in rows if "perf/tokens_per_s" in r]
    if logged:
        return per_step, logged[-1]
    if per_step and sequences_per_step:
        return per_step, sequences_per_step * mean_sequence_tokens(data_path) / per_step
    return per_step, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--short", action="store_true", help="fewer records, fewer steps")
    args = parser.parse_args()
    out = os.path.abspath(args.out_dir)
    if os.path.exists(out):
        print(f"error: {out} already exists; pass another directory", file=sys.stderr)
        sys.exit(2)
    os.makedirs(out)
    py = sys.executable
    t_start = time.time()

    # --- the data and a random GPT-2-small in the Hugging Face layout -----------------------------------
    make_raw_data(os.path.join(out, "raw"), n_train=20 if args.short else 40, n_test=10)
    data = os.path.join(out, "data")
    figures = [("prepare",) + run("prepare", [py, "-m", "data.hh_rlhf.prepare", "--local_dir", os.path.join(out, "raw"),
                                               "--out_dir", data, "--judge_halves"], out) + (None, None, data)]
    import torch
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    base = os.path.join(out, "gpt2_random")
    GPT(GPTConfig()).save_pretrained(base)  # GPT-2-small's geometry, random weights

    # --- the stages, each config/*_gpt2_hh.py with only its sizes lowered by flags ------------------------
    steps = 2 if args.short else 4
    small = ["--device=cpu", "--dtype=auto", "--compile=False", "--log_interval=1"]
    warm = "--warmup_iters=0"  # the stages with a warm-up (not PPO and GRPO)
    new_tokens = "--max_new_tokens=16"
    prefs = [f"--val_data={data}/prefs_val.jsonl", "--eval_max_examples=4"]
    stages = [
        ("sft", "sft.py", [f"--init_from={base}", f"--train_data={data}/sft_train.jsonl", f"--val_data={data}/sft_val.jsonl",
                           "--batch_size=2", "--grad_accum_steps=1", f"--max_iters={steps}", f"--eval_interval={steps}",
                           "--eval_max_examples=4", "--sample_interval=0", new_tokens, warm, *small]),
        ("reward", "reward.py", [f"--init_from={out}/sft", f"--train_data={data}/prefs_train_policy.jsonl", *prefs,
                                 f"--rl_prompts={data}/rl_prompts.jsonl", "--norm_samples=4", "--batch_size=2",
                                 "--grad_accum_steps=1", f"--max_iters={steps}", f"--eval_interval={steps}", new_tokens, warm, *small]),
        ("reward_judge", "reward.py", [f"--init_from={out}/sft", f"--train_data={data}/prefs_train_judge.jsonl", *prefs,
                                       f"--rl_prompts={data}/rl_prompts.jsonl", "--norm_samples=4", "--batch_size=2",
                                       "--grad_accum_steps=1", f"--max_iters={steps}", f"--eval_interval={steps}", new_tokens,
                                       warm, *small]),
        ("ppo", "ppo.py", [f"--sft_dir={out}/sft", f"--reward_dir={out}/reward", f"--prompts={data}/rl_prompts.jsonl",
                           "--batch_size=4", "--minibatch_size=2", "--max_iters=2", "--eval_interval=2",
                           "--sample_interval=0", new_tokens, *small]),
        ("grpo", "grpo.py", [f"--sft_dir={out}/sft", f"--reward_dir={out}/reward", f"--prompts={data}/rl_prompts.jsonl",
                             "--prompts_per_iter=2", "--group_size=2", "--minibatch_size=2", "--max_iters=2",
                             "--eval_interval=2", "--sample_interval=0", new_tokens, *small]),
        ("dpo", "dpo.py", [f"--init_from={out}/sft", f"--train_data={data}/prefs_train.jsonl", *prefs, "--batch_size=2",
                           "--grad_accum_steps=1", f"--max_iters={steps}", f"--eval_interval={steps}", warm, *small]),
        ("kto", "kto.py", [f"--init_from={out}/sft", f"--train_data={data}/prefs_train.jsonl", *prefs, "--batch_size=2",
                           "--grad_accum_steps=1", f"--max_iters={steps}", f"--eval_interval={steps}", warm, *small]),
    ]
    # sequences per training step (batch_size 2: SFT 2 demonstrations; reward and DPO 2 pairs, both responses;
    # KTO 2 completions) and the data they come from, for tokens per second
    per_step = {"sft": (2, "sft_train.jsonl"), "reward": (4, "prefs_train_policy.jsonl"),
                "reward_judge": (4, "prefs_train_judge.jsonl"), "dpo": (4, "prefs_train.jsonl"), "kto": (2, "prefs_train.jsonl")}
    for name, script, flags in stages:
        config = f"config/{'reward' if name == 'reward_judge' else name}_gpt2_hh.py"
        wall, peak = run(name, [py, script, "--config", config, f"--out_dir={out}/{name}", *flags], out)
        n_seq, path = per_step.get(name, (None, None))
        figures.append((name, wall, peak, *step_figures(os.path.join(out, name), n_seq, path and os.path.join(data, path)),
                        os.path.join(out, name)))
        print(f"{name}: {wall:.0f} s", flush=True)
    checkpoints = ",".join(f"{n}:{out}/{n}" for n in ("sft", "ppo", "grpo", "dpo", "kto"))
    wall, peak = run("evaluate", [py, "evaluate.py", "--judge=none", f"--base={base}", f"--checkpoints={checkpoints}",
                                  f"--reference={out}/sft", f"--reward_dir={out}/reward", f"--judge_reward_dir={out}/reward_judge",
                                  f"--eval_prompts={data}/sft_val.jsonl", f"--demos={data}/sft_val.jsonl", "--eval_max_prompts=4",
                                  "--samples_per_prompt=1", new_tokens, "--skip_long=True", "--batch_size=4", "--samples_md=2",
                                  "--device=cpu", f"--out_dir={out}/eval"], out)
    figures.append(("evaluate", wall, peak, None, None, os.path.join(out, "eval")))

    # --- what each stage cost, and what it handed on -----------------------------------------------------
    prepare_log = open(os.path.join(out, "prepare.log")).read()
    print(f"\nGPT-2-small rehearsal on CPU ({os.cpu_count()} cores), {time.time() - t_start:.0f} s in all; data: "
          + ", ".join(" ".join(line.split()[:2]) for line in prepare_log.splitlines() if line.split()[0].endswith(".jsonl")))
    print("\n| stage | wall s | peak RSS MB | s / step | tokens / s | handed on |\n| --- | ---: | ---: | ---: | ---: | --- |")
    for name, wall, peak, per_step, tokens, handed in figures:
        print(f"| {name} | {wall:.0f} | {peak:.0f} | {'-' if per_step is None else f'{per_step:.2f}'} | "
              f"{'-' if tokens is None else f'{tokens:,.0f}'} | {os.path.relpath(handed, out)} |")
    skipped = [line for name in ("sft", "reward", "ppo", "dpo")
               for line in open(os.path.join(out, f"{name}.log")).read().splitlines() if "too long" in line or "skipped" in line]
    print("\nskipped as longer than block_size (skip_long):\n" + "\n".join(skipped[:6]))
    print("\n" + open(os.path.join(out, "eval", "table.md")).read())


if __name__ == "__main__":
    main()
