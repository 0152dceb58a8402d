"""
bench_linear_layout.py -- the measurement behind generate()'s batch-1 fast path on the CPU: what a weight's
memory layout does to F.linear at the few rows a decode step multiplies.

    python bench/bench_linear_layout.py            # ~1 minute
    python bench/bench_linear_layout.py --quick

A decode step multiplies M = batch rows by every weight of the model, so at batch 1 it streams all
~0.5 GB of GPT-2-small's fp32 weights once per token: the speed is the memory bandwidth the matmul kernel
reaches. nn.Linear stores W as (out, in) rows ("row-major"); Hugging Face's Conv1D stores the transpose,
(in, out) ("column-major" for W). The math is the same; MKL picks different kernels for the two. For each
of GPT-2-small's matrices (and the LM head, tied to the (vocab, n_embd) embedding table) this prints the
time of F.linear(x (M, in), W) for both layouts, as the ratio row / col (> 1: the (in, out) layout is
faster), for M = 1 ... 64, and the GB/s the weights stream at M = 1.

Each timing cycles through enough copies of the matrix (about 1 GB) that it comes from memory, not from
the cache, as in a real decode step; both layouts alternate in every round; the median over rounds.
It also prints two facts behind how model.py uses this (GPT.widening_weights_stored_in_out: at batch 1 on
the CPU the widening matrices, out > in, get a transposed copy of their storage for one generate() call):
- what that per-call copy costs for GPT-2-small (c_attn, c_fc and the LM head: 0.35 GB);
- whether a fused AdamW step bumps a parameter's version counter (if not, a copy cached between calls and
  keyed on the version would go stale after an optimizer step: the reason the copy is made per call).
"""

import argparse
import os
import statistics
import sys
import time

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: model.py
from model import GPT, GPTConfig  # noqa: E402

MATRICES = {  # name -> (out, in) of nn.Linear in GPT-2-small
    "attn.c_attn": (2304, 768),
    "mlp.c_fc": (3072, 768),
    "mlp.c_proj": (768, 3072),
    "lm_head": (50257, 768),
}
ROWS = (1, 2, 3, 4, 8, 16, 64)  # M: the batch of a decode step
WORKING_SET_BYTES = 1 << 30  # cycle through ~1 GB of copies: out of the cache, like a model's weights


def time_linear(weights, x, repeats):
    """Seconds per F.linear(x, W), cycling through the copies in `weights`: median over `repeats` passes."""
    F.linear(x, weights[0])  # warm-up: kernel selection, first-touch of the output
    passes = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for w in weights:
            F.linear(x, w)
        passes.append((time.perf_counter() - t0) / len(weights))
    return statistics.median(passes)


def bench_matrix(name, shape, repeats):
    out_features, in_features = shape
    n_copies = max(2, WORKING_SET_BYTES // (out_features * in_features * 4))
    row_major = [torch.randn(out_features, in_features) for _ in range(n_copies)]  # nn.Linear's layout
    col_major = [w.t().contiguous().t() for w in row_major]  # the same W, stored as Conv1D's (in, out)
    ratios, gbps = [], None
    for M in ROWS:
        x = torch.randn(M, in_features)
        row, col = [], []
        for r in range(3):  # alternate the order: drift of the machine falls on both
            pair = (row_major, row), (col_major, col)
            for weights, times in (pair if r % 2 == 0 else pair[::-1]):
                times.append(time_linear(weights, x, repeats))
        row_s, col_s = statistics.median(row), statistics.median(col)
        ratios.append(row_s / col_s)
        if M == 1:
            gbps = (out_features * in_features * 4 / 1e9 / row_s, out_features * in_features * 4 / 1e9 / col_s)
    del row_major, col_major
    return ratios, gbps


def layout_swap_ms(repeats):
    """Milliseconds to enter and leave GPT.widening_weights_stored_in_out on GPT-2-small: the per-call cost of
    generate()'s batch-1 fast path (the transposing copies, their first touch of fresh memory, the swap back)."""
    model = GPT(GPTConfig())
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            with model.widening_weights_stored_in_out(True):
                pass
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times[1:])


def fused_adamw_bumps_version():
    p = torch.nn.Parameter(torch.randn(4, 4))
    optimizer = torch.optim.AdamW([p], lr=0.1, fused=True)
    p.sum().backward()
    before = p._version
    optimizer.step()
    return p._version != before


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer passes: a noisier check")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    t_start = time.time()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; F.linear(x (M, in), W): "
          f"time with W stored (out, in) [nn.Linear] / time with W stored (in, out) [Conv1D]; > 1: (in, out) is faster")
    print("\n| matrix (out, in) | " + " | ".join(f"M={M}" for M in ROWS) + " | GB/s at M=1, (out, in) / (in, out) |")
    print("| --- | " + " | ".join("---:" for _ in ROWS) + " | --- |")
    for name, shape in MATRICES.items():
        ratios, (row_gbps, col_gbps) = bench_matrix(name, shape, repeats)
        print(f"| {name} {shape} | " + " | ".join(f"{r:.2f}" for r in ratios) + f" | {row_gbps:.0f} / {col_gbps:.0f} |")
    print(f"\ngenerate() at batch 1 on the CPU: storing GPT-2-small's widening weights (in, out) for the call costs "
          f"{layout_swap_ms(repeats):.0f} ms (once per call)")
    print(f"a fused AdamW step bumps the parameter's version counter: {fused_adamw_bumps_version()}")
    print(f"Command: `python bench/bench_linear_layout.py{' --quick' if args.quick else ''}` -- took "
          f"{(time.time() - t_start) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
