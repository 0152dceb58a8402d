"""Prompt strings in, sampled response strings out: shared by every stage that samples text (SFT's
periodic samples, the reward model's normalisation, DPO's gold evaluation). PPO's rollouts keep their
tensors and live in ppo.py."""

import contextlib

import torch

from data.batches import left_pad
from data.formats import format_prompt


@torch.no_grad()
def generate_responses(model, tok, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                       batch_size=64, device="cpu", autocast=None):
    """Sample one response per prompt (raw human messages; the template is applied here).
    Returns a list of (response text without end-of-text, ended: bool) in prompt order."""
    autocast = autocast or contextlib.nullcontext()
    out = []
    for i in range(0, len(prompts), batch_size):
        rows = [tok.encode(format_prompt(p)) for p in prompts[i:i + batch_size]]
        idx, mask = left_pad(rows, tok.pad_id, device)
        n_new = min(max_new_tokens, model.config.block_size - idx.shape[1])  # never past the context window
        with autocast:
            tokens = model.generate(idx, n_new, temperature=temperature, top_k=top_k, top_p=top_p,
                                    eos_token_id=tok.eot_id, pad_token_id=tok.pad_id, attention_mask=mask)
        for row in tokens[:, idx.shape[1]:].tolist():
            ended = tok.eot_id in row
            if ended:
                row = row[:row.index(tok.eot_id)]
            out.append((tok.decode(row).removeprefix(" "), ended))
    return out
