"""Prompts in, sampled responses out (as token ids, or as strings): shared by every stage that samples text (SFT's
periodic samples, the reward model's normalisation, DPO's gold evaluation). PPO's rollouts keep their
tensors and live in ppo.py."""

import contextlib

import torch

from data.batches import left_pad
from data.formats import format_prompt


@torch.no_grad()
def generate_ids(model, tok, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, batch_size=64,
                 device="cpu", autocast=None):
    """Sample one response per prompt (token ids, in the template already). Returns the responses' token ids in
    prompt order, each ending with end-of-text if it ended, never longer than the context window allows."""
    autocast = autocast or contextlib.nullcontext()
    out = []
    for i in range(0, len(prompt_ids), batch_size):
        idx, mask = left_pad(prompt_ids[i:i + batch_size], tok.pad_id, device)
        n_new = min(max_new_tokens, model.config.block_size - idx.shape[1])  # never past the context window
        with autocast:
            tokens = model.generate(idx, n_new, temperature=temperature, top_k=top_k, top_p=top_p,
                                    eos_token_id=tok.eot_id, pad_token_id=tok.pad_id, attention_mask=mask)
        for row in tokens[:, idx.shape[1]:].tolist():
            out.append(row[:row.index(tok.eot_id) + 1] if tok.eot_id in row else row)
    return out


def decode_response(tok, response_ids):
    """A response's token ids -> (its text without end-of-text, ended: bool)."""
    ended = bool(response_ids) and response_ids[-1] == tok.eot_id
    return tok.decode(response_ids[:-1] if ended else response_ids).removeprefix(" "), ended


def generate_responses(model, tok, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                       batch_size=64, device="cpu", autocast=None):
    """Sample one response per prompt (raw human messages; the template is applied here).
    Returns a list of (response text without end-of-text, ended: bool) in prompt order."""
    responses = generate_ids(model, tok, [tok.encode(format_prompt(p)) for p in prompts], max_new_tokens, temperature,
                             top_k, top_p, batch_size, device, autocast)
    return [decode_response(tok, r) for r in responses]
