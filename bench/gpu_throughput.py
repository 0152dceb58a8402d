"""
gpu_throughput.py -- step throughput of the stages' inner work at GPT-2-small geometry (random weights: no
download), for scripts/gpu_check.sh:

    python bench/gpu_throughput.py --device=cuda          # GPT-2-small, bf16 autocast, fused AdamW, torch.compile
    python bench/gpu_throughput.py --device=cpu --tiny    # the same code at a tiny geometry (the test suite)

Rows, each the median of --steps timed steps after --warmup untimed ones (CUDA synchronised around each):
  - SFT step: forward, token cross-entropy, backward, AdamW, on batch x seq tokens;
  - DPO step: chosen and rejected in one forward (2 x pairs sequences), the DPO loss against fixed
    reference log-probs (dpo.py precomputes them), backward, AdamW;
  - PPO rollout: ppo.rollout -- KV-cache sampling of max_new_tokens per prompt, then the policy, reference and
    reward-model forwards over the whole sequences -- in new tokens per second.
MFU (model FLOPs utilisation) for the training steps: 6 * parameters * tokens per second over the GPU's dense
bf16 peak from its datasheet (PEAK_BF16_TFLOPS, by device name; '-' for a GPU not listed, and on CPU).
"""

import argparse
import os
import statistics
import sys
import time

import torch
from torch.nn import functional as F

PEAK_BF16_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "A10G": 125, "L40S": 362, "L4": 121, "RTX 4090": 165,
                    "RTX 3090": 71, "V100": 125}  # dense (no sparsity) bf16 tensor-core peaks; V100: fp16


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: model.py, ...


def peak_tflops(device):
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def timed(fn, steps, warmup, device):
    """Median seconds of fn() over `steps` calls, after `warmup` calls (compilation, allocator warm-up)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--tiny", action="store_true", help="a tiny geometry: the CPU check of the test suite")
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"], help="auto: on for CUDA")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    from dpo import dpo_loss, sequence_logps
    from model import GPT, GPTConfig
    from optim import configure_adamw
    from ppo import rollout
    from runtime import setup_runtime

    rt = setup_runtime(args.device, args.dtype, seed=0)
    if args.tiny:
        geometry = dict(block_size=128, vocab_size=96, n_layer=2, n_head=2, n_embd=32)
        batch, seq, pairs, prompts, prompt_len, new_tokens = 4, 64, 2, 4, 16, 16
    else:
        geometry = dict(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768)  # GPT-2-small
        batch, seq, pairs, prompts, prompt_len, new_tokens = 8, 512, 4, 16, 128, 128
    compile_on = args.compile == "on" or (args.compile == "auto" and rt.device_type == "cuda")
    model = GPT(GPTConfig(**geometry)).to(rt.device)
    n_params = sum(p.numel() for p in model.parameters())
    trained = torch.compile(model) if compile_on else model
    optimizer = configure_adamw(model, 1e-5, 0.0, (0.9, 0.95), rt.device_type)
    peak = peak_tflops(rt.device)
    vocab = geometry["vocab_size"]
    x = torch.randint(vocab, (batch, seq + 1), device=rt.device)

    def sft_step():
        with rt.autocast:
            logits, _ = trained(x[:, :-1])
        loss = F.cross_entropy(logits.float().view(-1, vocab), x[:, 1:].reshape(-1))
        rt.scaler.scale(loss).backward()
        rt.scaler.step(optimizer)
        rt.scaler.update()
        optimizer.zero_grad(set_to_none=True)

    pair_tokens = torch.randint(vocab, (2 * pairs, seq + 1), device=rt.device)
    labels = pair_tokens[:, 1:].clone()
    labels[:, :seq // 4] = -100  # a prompt of a quarter of the sequence: no loss there
    ref_logps = torch.zeros(2 * pairs, device=rt.device)

    def dpo_step():
        with rt.autocast:
            logits, _ = trained(pair_tokens[:, :-1])
        logps = sequence_logps(logits.float(), labels)
        losses, _, _ = dpo_loss(logps[:pairs], logps[pairs:], ref_logps[:pairs], ref_logps[pairs:], beta=0.1)
        rt.scaler.scale(losses.mean()).backward()
        rt.scaler.step(optimizer)
        rt.scaler.update()
        optimizer.zero_grad(set_to_none=True)

    reward_model = GPT(GPTConfig(**geometry, scalar_head=True)).to(rt.device).eval()

    class Tok:  # what rollout needs of a tokenizer: the end-of-text and padding ids (random weights never stop early)
        eot_id, pad_id = vocab - 1, vocab - 1
    prompt_ids = torch.randint(vocab - 1, (prompts, prompt_len)).tolist()

    def rollout_step():
        rollout(model.eval(), model, None, reward_model, prompt_ids, Tok, new_tokens, 1.0, 0.0, rt)
        model.train()

    rows = []
    t = timed(sft_step, args.steps, args.warmup, rt.device)
    rows.append(("SFT step", f"{batch} x {seq}", batch * seq / t, 6 * n_params * batch * seq / t))
    t = timed(dpo_step, args.steps, args.warmup, rt.device)
    rows.append(("DPO step", f"{pairs} pairs x 2 x {seq}", 2 * pairs * seq / t, 6 * n_params * 2 * pairs * seq / t))
    t = timed(rollout_step, max(1, args.steps // 2), 1, rt.device)
    rows.append(("PPO rollout (new tokens)", f"{prompts} x ({prompt_len} + {new_tokens})", prompts * new_tokens / t, None))

    name = torch.cuda.get_device_name(rt.device) if rt.device_type == "cuda" else "CPU"
    print(f"{name}; {n_params:,} parameters ({'tiny' if args.tiny else 'GPT-2-small'} geometry, random weights); "
          f"{str(rt.dtype).replace('torch.', '')} autocast; torch.compile {'on' if compile_on else 'off'}; "
          f"peak {peak or '-'} TFLOP/s")
    print("| measurement | shape | tokens/s | MFU |\n| --- | --- | ---: | ---: |")
    for what, shape, tokens_per_s, flops in rows:
        mfu = f"{100 * flops / (peak * 1e12):.0f}%" if flops is not None and peak else "-"
        print(f"| {what} | {shape} | {tokens_per_s:,.0f} | {mfu} |")


if __name__ == "__main__":
    main()
