"""
What notebooks 03-05 share: the toy world written into a temporary directory, the tiny model size, and
a policy fine-tuned for 400 steps with exactly the loop of 02_sft.ipynb (data/batches.py's
tokenize_demonstrations and collate, sft.py's build_example and supervised_loss_sum), so that each notebook
runs alone in well under a minute.
"""

import os
import random
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# the tiny character-level GPT of the notebooks: ~0.1M parameters, a step in ~50 ms on one CPU thread
TINY = dict(block_size=128, n_layer=2, n_head=2, n_embd=64)


_temp_dirs = []  # kept alive until the kernel exits, then deleted


def prepare_toy_data(out_dir=None):
    """Write the toy world (python -m data.toy.prepare) into out_dir, by default a fresh temporary
    directory (deleted when the Python process exits), never into the source tree. Returns the directory."""
    if out_dir is None:
        _temp_dirs.append(tempfile.TemporaryDirectory(prefix="tinyrlhf-toy-"))
        out_dir = _temp_dirs[-1].name
    subprocess.run([sys.executable, "-m", "data.toy.prepare", "--out_dir", out_dir], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return out_dir


def quick_sft(data_dir, steps=400, batch_size=16, learning_rate=5e-3, seed=0):
    """A tiny char GPT fine-tuned on the toy demonstrations: returns (model in eval mode, tokenizer,
    per-step training losses). The loop is 02_sft.ipynb's: AdamW with warm-up and cosine decay, the
    per-token mean of the loss over the response and end-of-text tokens."""
    from data.batches import collate, tokenize_demonstrations
    from data.formats import load_sft
    from model import GPT, GPTConfig
    from optim import configure_adamw, lr_at, set_lr
    from sft import build_example, supervised_loss_sum
    from tokenizer import get_tokenizer

    tok = get_tokenizer(os.path.join(data_dir, "vocab.json"))
    path = os.path.join(data_dir, "sft_train.jsonl")
    demos, _ = tokenize_demonstrations(load_sft(path), tok, TINY["block_size"], path, skip_long=False)
    examples = [build_example(prompt, response, tok.eot_id) for prompt, response in demos]
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, **TINY))
    optimizer = configure_adamw(model, learning_rate, 0.1, (0.9, 0.95), "cpu")
    rng = random.Random(seed)
    losses = []
    for step in range(steps):
        set_lr(optimizer, lr_at(step, learning_rate, learning_rate / 10, 20, steps))
        x, y = collate(rng.sample(examples, batch_size), tok.pad_id, "cpu")  # (B, T), (B, T)
        logits, _ = model(x)  # (B, T, vocab)
        loss = supervised_loss_sum(logits, y) / (y != -100).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), tok, losses
