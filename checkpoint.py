"""
Checkpoints and run directories, shared by every stage.

A stage writes out_dir/ckpt.pt: the unwrapped (no DDP, no torch.compile) model state dict, the model's
GPTConfig, its tokenizer (tokenizer.spec: 'gpt2' or a char vocabulary), the optimizer and GradScaler
states, the step, every RNG state and the run's config. It is written with atomic_io.atomic_write (a
temporary file in the same directory, fsync, rename), so a crash or kill -9 mid-write leaves the
previous checkpoint whole. Stages talk to each other only through these files.
"""

import os
import random
from dataclasses import asdict

import numpy as np
import torch

from atomic_io import atomic_write
from model import GPT, GPTConfig

CKPT_NAME = "ckpt.pt"


def prepare_out_dir(out_dir, resume, overwrite):
    """Refuse to write over another run unless asked to. Call only after every input has been
    validated, so that bad input never leaves anything behind in out_dir."""
    ckpt = os.path.join(out_dir, CKPT_NAME)
    if resume:
        if not os.path.isfile(ckpt):
            raise FileNotFoundError(f"resume: no checkpoint at {ckpt}")
        return
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(f"out_dir {out_dir!r} already holds a run: pass --resume=True to continue it, "
                              f"--overwrite=True to replace it, or choose another --out_dir")
    os.makedirs(out_dir, exist_ok=True)
    for stale in ("metrics.jsonl", CKPT_NAME):  # what a replaced run would otherwise leave behind
        if os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))


def rng_state():
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir, model, config, step, tokenizer, optimizer=None, scaler=None, extra=None):
    """Atomically write out_dir/ckpt.pt. `model` is the raw model (not DDP-wrapped, not compiled);
    `tokenizer` is the tokenizer's spec (tok.spec), which later stages rebuild it from."""
    state = {
        "model": model.state_dict(),
        "tokenizer": tokenizer,
        "model_args": asdict(model.config),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": step,
        "rng": rng_state(),
        "config": asdict(config),
        **(extra or {}),
    }
    return atomic_write(os.path.join(out_dir, CKPT_NAME), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path, device="cpu"):
    """A checkpoint dict from a ckpt.pt file or a directory holding one."""
    if os.path.isdir(path):
        path = os.path.join(path, CKPT_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=device, weights_only=True)


def restore_training_state(ckpt, optimizer, scaler):
    """Load the optimizer, GradScaler and RNG states of a checkpoint being resumed; returns its step."""
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return ckpt["step"]


def model_from_checkpoint(ckpt):
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    return model


def load_model(init_from, dropout=0.0):
    """A GPT to start a stage from, and its tokenizer's spec (for get_tokenizer): a checkpoint directory of this
    project (out_dir of an earlier stage), a GPT-2 name ('gpt2', 'gpt2-medium', ...) or a directory in
    the Hugging Face layout. Returns (model, tokenizer spec, ckpt or None)."""
    if os.path.isfile(os.path.join(init_from, CKPT_NAME)):
        ckpt = load_checkpoint(init_from)
        return model_from_checkpoint(ckpt).set_dropout(dropout), ckpt["tokenizer"], ckpt
    return GPT.from_pretrained(init_from, dropout=dropout), "gpt2", None
