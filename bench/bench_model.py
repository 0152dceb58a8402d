"""
bench_model.py -- how fast is model.py on this CPU, measured against Hugging Face's GPT2LMHeadModel.

    python bench/bench_model.py            # the numbers for the README
    python bench/bench_model.py --quick    # fewer rounds, 32 new tokens for GPT-2-small: a noisier check
    python bench/bench_model.py --profile  # instead: where one training step of ours spends its time

The default run took 3 minutes (Intel Xeon) to 5.4 (AMD EPYC) on 2 quiet cores, and 12 to 20 minutes while
other jobs shared them (greedy decoding of GPT-2-small without a cache is the slowest part).

What it measures, for two geometries -- GPT-2-small (GPTConfig() defaults, 124M parameters, random
weights) and the tiny character-level model of the toy CPU configs (4 layers, 128 wide, vocab 64;
its context is 128 tokens, so after a 16-token prompt it generates 112 new tokens, not 128):

- the training step, in tokens/s: forward, cross-entropy, backward and AdamW step, in fp32 and under
  bf16 autocast (how the project trains tiny models on CPU), ours against transformers';
- MFU, model FLOPs utilisation: 6 * N * tokens/s over the peak FLOP/s of a large matmul, timed in the
  same rounds (6 N = 2 N forward + 4 N backward FLOPs per token; attention's own FLOPs are not counted);
- greedy generation, in new tokens/s: our `generate()` with its key/value cache, the same model with
  no cache (the whole sequence re-run for every new token), and transformers' `generate()`.

How to compare two implementations fairly on a noisy machine (this one is shared with other jobs):
1. the same computation: transformers' model gets *our* weights, the same inputs, the same optimizer
   settings, dropout 0 on both, the same attention kernel (SDPA); the output checks that both give the
   same first loss and the same greedy tokens;
2. warm-up first: the first calls allocate memory, create AdamW's state and pick kernels -- not timed;
3. interleave: every round times ours and theirs back to back, and the order flips each round
   (A B, B A, A B ...), so a slow patch of the machine hits both alike;
4. repeat and take the median, which one unlucky repeat cannot move; the ratio is the median of the
   per-round ratios (each from two runs seconds apart), and [min-max] over the rounds says how noisy
   it was. A verdict whose range straddles its target is marked "within noise". When noise comes in
   bursts that hit most rounds, the ratio of the fastest runs (also printed) is the better estimate.
5. know the machine: the header prints the load average. On a busy machine OpenMP threads that spin
   while they wait take the cores from the threads doing the work, and each small op can cost
   milliseconds; `OMP_WAIT_POLICY=PASSIVE python bench/bench_model.py` makes them sleep instead.
"""

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: model.py
import transformers  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from model import CONV1D_WEIGHTS, GPT, GPTConfig  # noqa: E402
from optim import configure_adamw  # noqa: E402

# -----------------------------------------------------------------------------------------------------
# what to run


@dataclass
class Setting:
    name: str  # how the geometry is called in the output
    config: GPTConfig
    train_batch: tuple  # (B, T) of a training step
    train_warmup: int  # untimed rounds (>= 1: the first creates AdamW's state)
    train_repeats: int  # timed rounds (one step of ours and one of theirs, in fp32 and in bf16)
    gen_batch: int  # prompts generated at once (tiny: 64, the batch of the toy RL configs; GPT-2-small: 1)
    gen_prompt: int  # prompt length in tokens
    gen_new: int  # new tokens per prompt
    gen_repeats: int  # timed rounds (ours with cache, ours without, transformers)


def settings(quick):
    gpt2 = GPTConfig()  # GPT-2-small: 12 layers, 12 heads, 768 wide, vocab 50257
    tiny = GPTConfig(block_size=128, vocab_size=64, n_layer=4, n_head=4, n_embd=128)  # config/sft_toy.py
    # the tiny model's context is 128 tokens: after a 16-token prompt, 112 new tokens fill it. Tiny rounds are
    # cheap but the noisiest (each op is short, so a busy machine stalls it hardest): they get more rounds
    if quick:
        return [Setting("tiny", tiny, (32, 128), 1, 3, 64, 16, 112, 3),
                Setting("GPT-2-small", gpt2, (4, 256), 1, 1, 1, 16, 32, 1)]
    return [Setting("tiny", tiny, (32, 128), 2, 9, 64, 16, 112, 7),
            Setting("GPT-2-small", gpt2, (4, 256), 1, 5, 1, 16, 128, 2)]


LEARNING_RATE, WEIGHT_DECAY, BETAS = 6e-4, 0.1, (0.9, 0.95)  # the same AdamW for both models
TRAIN_TARGET = 1.0  # our training step at least as fast as transformers'
CACHE_TARGET = 3.0  # generation with the KV cache at least 3x faster than without
GENERATE_TARGET = {"tiny": 1.5, "GPT-2-small": 1.2}  # our generate() against transformers' (issue 18)

# -----------------------------------------------------------------------------------------------------
# timing


def interleaved(fns, repeats, warmup=1, warmup_fns=None):
    """Time every function of `fns` (name -> no-argument callable) once per round, for `repeats` rounds,
    after `warmup` untimed rounds (of `warmup_fns` if given: a cheaper call that warms the same code).
    The order flips every round so that drift of the machine falls on all of them alike.
    Returns name -> list of seconds (one per round), and name -> what its last call returned."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            (warmup_fns or fns)[name]()
    seconds = {name: [] for name in names}
    results = {}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            results[name] = fns[name]()
            seconds[name].append(time.perf_counter() - t0)
    return seconds, results


def spread(xs):
    """The noise of a list of timings: (max - min) / median, in percent."""
    return 100 * (max(xs) - min(xs)) / statistics.median(xs)


def paired_ratio(slow, fast):
    """Per-round ratios slow[i] / fast[i] (how many times faster `fast` is): median, min, max. Each ratio
    comes from two runs made seconds apart, so it cancels machine drift better than a ratio of medians."""
    ratios = [s / f for s, f in zip(slow, fast)]
    return statistics.median(ratios), min(ratios), max(ratios)


def best_ratio(slow, fast):
    """A second opinion for a bursty machine: the ratio of the fastest runs. Noise only ever adds time, so
    the fastest run of each is the closest to its undisturbed cost, even when most rounds were disturbed
    (the median needs more than half of the rounds to be clean)."""
    return min(slow) / min(fast)


def verdict(ratio, target):
    median, lo, hi = ratio
    result = "PASS" if median >= target else "FAIL"
    return result + (" (within noise)" if lo < target <= hi else "")


def fmt_ratio(ratio):
    median, lo, hi = ratio
    return f"{median:.2f}x [{lo:.2f}-{hi:.2f}]"


def fmt_rate(tokens, seconds):
    rate = tokens / statistics.median(seconds)
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


# -----------------------------------------------------------------------------------------------------
# the two models, with the same weights


def hf_twin(model):
    """transformers' GPT2LMHeadModel with the geometry and the weights of our GPT (SDPA attention, dropout
    0). Hugging Face's Conv1D stores its weights (in, out), the transpose of our nn.Linear."""
    c = model.config
    hf_config = GPT2Config(n_positions=c.block_size, vocab_size=c.vocab_size, n_layer=c.n_layer, n_head=c.n_head,
                           n_embd=c.n_embd, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                           bos_token_id=None, eos_token_id=None, pad_token_id=0)
    hf = GPT2LMHeadModel._from_config(hf_config, attn_implementation="sdpa")
    state = {k: (v.t() if k.endswith(CONV1D_WEIGHTS) else v) for k, v in model.state_dict().items()}
    hf.load_state_dict(state)
    hf.generation_config.eos_token_id = None  # never stop early: both sides generate every token
    hf.generation_config.pad_token_id = 0
    return hf


def our_loss(model, x, y):
    _, loss = model(x, y)
    return loss


def hf_loss(model, x, y):
    # use_cache=False: in training there is nothing to cache (a cache would only cost transformers time)
    logits = model(input_ids=x, use_cache=False).logits  # (B, T, vocab)
    return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.view(-1))


def train_step(model, optimizer, loss_fn, x, y, autocast):
    """One optimizer step: forward and loss (under autocast), backward, AdamW."""
    with autocast:
        loss = loss_fn(model, x, y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


@torch.no_grad()
def generate_no_cache(model, idx, max_new_tokens):
    """Greedy decoding without a key/value cache: every step runs the whole sequence through the model
    again. Only the last position's logits are computed, so the baseline pays for the missing cache and
    for nothing else."""
    for _ in range(max_new_tokens):
        x = model.hidden_states(idx)[:, -1]  # (B, n_embd): the last position predicts the next token
        next_token = model.lm_head(x).argmax(dim=-1, keepdim=True)  # (B, 1)
        idx = torch.cat([idx, next_token], dim=1)  # (B, T + 1)
    return idx


# -----------------------------------------------------------------------------------------------------
# the benchmarks


MATMUL_N = 2048


def matmul_fns():
    """A 2048 x 2048 x 2048 matmul (2 * 2048^3 FLOPs) in fp32 and in bf16: what this machine's matmul can
    do, the denominator of MFU. It is timed in the same rounds as the training steps, because on a shared
    machine a peak measured a minute earlier can be three times higher or lower; the peak is its fastest
    run (one matmul is short enough for a burst of noise to halve its median)."""
    a32, b32 = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    return {"matmul fp32": lambda: a32 @ b32, "matmul bf16": lambda: a16 @ b16}


def bench_training(s):
    """Training tokens/s of ours and transformers', in fp32 and under bf16 autocast, all four (and the
    matmuls for MFU) timed in the same rounds; returns table rows."""
    torch.manual_seed(1337)
    ours = GPT(s.config)
    theirs = hf_twin(ours)
    ours.train(), theirs.train()
    opt_ours = configure_adamw(ours, LEARNING_RATE, WEIGHT_DECAY, BETAS, "cpu")
    opt_theirs = configure_adamw(theirs, LEARNING_RATE, WEIGHT_DECAY, BETAS, "cpu")
    B, T = s.train_batch
    x = torch.randint(0, s.config.vocab_size, (B, T))  # (B, T): the same random tokens for both
    y = torch.randint(0, s.config.vocab_size, (B, T))
    n_params = ours.get_num_params()
    tokens = B * T
    fp32 = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    fns = {
        "ours fp32": lambda: train_step(ours, opt_ours, our_loss, x, y, fp32()),
        "transformers fp32": lambda: train_step(theirs, opt_theirs, hf_loss, x, y, fp32()),
        "ours bf16": lambda: train_step(ours, opt_ours, our_loss, x, y, bf16()),
        "transformers bf16": lambda: train_step(theirs, opt_theirs, hf_loss, x, y, bf16()),
        **matmul_fns(),
    }

    # first warm-up round, untimed: it creates AdamW's state; the models start from the same weights, so
    # their first fp32 losses must agree -- the check that both compute the same thing
    first_loss = {name: fn() for name, fn in fns.items()}
    print(f"\n[{s.name}] training, batch {B} x {T} = {tokens} tokens/step, {n_params / 1e6:.2f}M parameters; "
          f"first-step loss ours {first_loss['ours fp32']:.5f}, transformers {first_loss['transformers fp32']:.5f}")
    seconds, _ = interleaved(fns, s.train_repeats, warmup=s.train_warmup - 1)

    rows = []
    for precision in ("fp32", "bf16"):
        t_ours, t_theirs, t_matmul = (seconds[f"{name} {precision}"] for name in ("ours", "transformers", "matmul"))
        ratio = paired_ratio(t_theirs, t_ours)
        peak = 2 * MATMUL_N**3 / min(t_matmul)  # FLOP/s
        mfu = 6 * n_params * tokens / statistics.median(t_ours) / peak
        mfu_theirs = 6 * n_params * tokens / statistics.median(t_theirs) / peak
        label = "fp32" if precision == "fp32" else "bf16 autocast"
        print(f"  {label:13s} ours {fmt_rate(tokens, t_ours):>7s} tok/s ({spread(t_ours):3.0f}%, MFU {100 * mfu:2.0f}%)   "
              f"transformers {fmt_rate(tokens, t_theirs):>7s} tok/s ({spread(t_theirs):3.0f}%, MFU {100 * mfu_theirs:2.0f}%)   "
              f"ours/transformers {fmt_ratio(ratio)}, fastest runs {best_ratio(t_theirs, t_ours):.2f}x   "
              f"{verdict(ratio, TRAIN_TARGET)}")
        rows.append((f"train step, {label}", f"{s.name}, {B}x{T}", f"{fmt_rate(tokens, t_ours)} (MFU {100 * mfu:.0f}%)",
                     f"transformers {fmt_rate(tokens, t_theirs)} (MFU {100 * mfu_theirs:.0f}%)",
                     fmt_ratio(ratio), f">= {TRAIN_TARGET:.1f}x", verdict(ratio, TRAIN_TARGET)))
    print(f"  matmul {MATMUL_N}^3 in the same rounds, fastest (median): " + ", ".join(
        f"{p} {2 * MATMUL_N**3 / min(seconds[f'matmul {p}']) / 1e9:.0f} GFLOP/s "
        f"({2 * MATMUL_N**3 / statistics.median(seconds[f'matmul {p}']) / 1e9:.0f})" for p in ("fp32", "bf16")))
    speedup = paired_ratio(seconds["ours fp32"], seconds["ours bf16"])
    print(f"  bf16 autocast speed-up over fp32, ours: {fmt_ratio(speedup)}, fastest runs "
          f"{best_ratio(seconds['ours fp32'], seconds['ours bf16']):.2f}x")
    rows.append(("train step, bf16 autocast vs fp32 (ours)", f"{s.name}, {B}x{T}", fmt_rate(tokens, seconds["ours bf16"]),
                 f"fp32 {fmt_rate(tokens, seconds['ours fp32'])}", fmt_ratio(speedup), "-", "-"))
    return rows


def bench_generation(s):
    """New tokens/s of greedy generation: ours with the KV cache, ours without, transformers'."""
    torch.manual_seed(1337)
    ours = GPT(s.config)
    theirs = hf_twin(ours)
    ours.eval(), theirs.eval()
    B, T0, n_new = s.gen_batch, s.gen_prompt, s.gen_new
    idx = torch.randint(0, s.config.vocab_size, (B, T0))  # (B, T0): the same prompt for all three
    mask = torch.ones_like(idx)
    fns = {
        "cache": lambda n=n_new: ours.generate(idx, n, temperature=0),
        "no cache": lambda n=n_new: generate_no_cache(ours, idx, n),
        "transformers": lambda n=n_new: theirs.generate(idx, attention_mask=mask, max_new_tokens=n,
                                                        do_sample=False, use_cache=True),
    }
    # warm-up with 8 new tokens: a full no-cache run of GPT-2-small costs as much as a whole timed round
    seconds, outs = interleaved(fns, s.gen_repeats, warmup=1, warmup_fns={k: (lambda f=f: f(8)) for k, f in fns.items()})

    # the same computation? all three must return the same greedy tokens (the first few surely agree;
    # over many steps a float rounding difference can flip a near-tie of random weights' logits)
    assert all(o.shape == (B, T0 + n_new) for o in outs.values()), {k: o.shape for k, o in outs.items()}
    agree = {name: (outs[name][:, T0:] == outs["cache"][:, T0:]).float().mean().item() for name in ("no cache", "transformers")}
    tokens = B * n_new
    vs_nocache = paired_ratio(seconds["no cache"], seconds["cache"])
    vs_theirs = paired_ratio(seconds["transformers"], seconds["cache"])
    print(f"\n[{s.name}] greedy generation, batch {B}, prompt {T0} tokens, {n_new} new tokens; greedy tokens agree "
          f"with the cached ones: no cache {100 * agree['no cache']:.0f}%, transformers {100 * agree['transformers']:.0f}%")
    for name in fns:
        print(f"  {name:13s} {fmt_rate(tokens, seconds[name]):>8s} new tok/s ({spread(seconds[name]):3.0f}%)")
    print(f"  cache vs no cache    {fmt_ratio(vs_nocache)}, fastest runs "
          f"{best_ratio(seconds['no cache'], seconds['cache']):.2f}x   {verdict(vs_nocache, CACHE_TARGET)}")
    target = GENERATE_TARGET[s.name]
    print(f"  ours vs transformers {fmt_ratio(vs_theirs)}, fastest runs {best_ratio(seconds['transformers'], seconds['cache']):.2f}x   "
          f"{verdict(vs_theirs, target)}")
    shape = f"{s.name}, batch {B}, {T0}+{n_new} tokens"
    return [("generate, KV cache vs no cache", shape, fmt_rate(tokens, seconds["cache"]),
             f"no cache {fmt_rate(tokens, seconds['no cache'])}", fmt_ratio(vs_nocache),
             f">= {CACHE_TARGET:.0f}x", verdict(vs_nocache, CACHE_TARGET)),
            ("generate, KV cache vs transformers", shape, fmt_rate(tokens, seconds["cache"]),
             f"transformers {fmt_rate(tokens, seconds['transformers'])}", fmt_ratio(vs_theirs), f">= {target:.1f}x",
             verdict(vs_theirs, target))]


def profile_training(s, precision):
    """Where one training step of ours goes: forward, backward and AdamW, then the operators that take the
    most CPU time (self time: inside the operator itself, not in the operators it calls)."""
    from torch.profiler import ProfilerActivity, profile, record_function
    torch.manual_seed(1337)
    model = GPT(s.config)
    optimizer = configure_adamw(model, LEARNING_RATE, WEIGHT_DECAY, BETAS, "cpu")
    B, T = s.train_batch
    x = torch.randint(0, s.config.vocab_size, (B, T))
    y = torch.randint(0, s.config.vocab_size, (B, T))
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=(precision == "bf16"))  # noqa: E731
    for _ in range(2):  # warm-up
        train_step(model, optimizer, our_loss, x, y, autocast())
    phases = ("1 forward + loss", "2 backward", "3 AdamW step")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function(phases[0]), autocast():
            loss = our_loss(model, x, y)
        with record_function(phases[1]):
            loss.backward()
        with record_function(phases[2]):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    events = prof.key_averages()
    ms = {e.key: e.cpu_time_total / 1e3 for e in events if e.key in phases}
    total = sum(ms.values())
    print(f"\n[{s.name}] one training step of ours, {precision}, batch {B} x {T}: {total:.0f} ms = "
          + ", ".join(f"{name[2:]} {ms[name]:.0f} ms ({100 * ms[name] / total:.0f}%)" for name in phases))
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=50))


# -----------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and new tokens: a noisier check")
    parser.add_argument("--profile", action="store_true", help="instead of the benchmarks, profile a training step of ours")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    args = parser.parse_args()
    command = " ".join(["python bench/bench_model.py"] + sys.argv[1:])

    n_cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(args.threads or n_cores)  # one thread per core: more only makes them fight
    transformers.logging.set_verbosity_error()  # its advice about attention masks does not apply here
    t_start = time.perf_counter()
    load = os.getloadavg()[0]
    print(f"{command}\ntorch {torch.__version__}, transformers {transformers.__version__}, Python "
          f"{platform.python_version()}, {platform.processor() or platform.machine()} "
          f"({torch.backends.cpu.get_cpu_capability()}), {n_cores} cores, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; load average {load:.1f} at the start")
    if load > n_cores:
        print("  the machine is busy with other work: absolute numbers are low and noisy, the same-round ratios are\n"
              "  the trustworthy part. OpenMP threads that spin while they wait steal the cores from the threads\n"
              "  doing the work; OMP_WAIT_POLICY=PASSIVE (or --threads 1) makes small ops far faster on a busy machine")

    if args.profile:
        for s in settings(args.quick):
            for precision in ("fp32", "bf16"):
                profile_training(s, precision)
        return

    rows = []
    for s in settings(args.quick):
        t0 = time.perf_counter()
        rows += bench_training(s)
        gc.collect()
        print(f"  (training benchmark: {time.perf_counter() - t0:.0f} s)")
        t0 = time.perf_counter()
        rows += bench_generation(s)
        gc.collect()
        print(f"  (generation benchmark: {time.perf_counter() - t0:.0f} s)")
    minutes = (time.perf_counter() - t_start) / 60
    print(f"\n## Model speed on CPU ({n_cores} cores, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"transformers {transformers.__version__})\n")
    print("| benchmark | geometry | ours, tokens/s | reference, tokens/s | ratio, median [min-max] | target | result |")
    print("| --- | --- | ---: | ---: | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nMFU = 6 x parameters x tokens/s over the fastest {MATMUL_N}^3 matmul of the same precision, timed in the "
          f"same rounds. Ratios: medians [min-max] over rounds that time both sides back to back; where the range is wide, "
          f"the machine was busy and a ratio can even disagree with the two tokens/s columns (each a median on its own).")
    print(f"Command: `{command}` -- took {minutes:.1f} minutes; load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end.")


if __name__ == "__main__":
    main()
