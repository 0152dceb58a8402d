"""
Checkpoints and run directories, shared by every stage.

A stage writes out_dir/ckpt.pt: the stage that wrote it ('sft', 'reward', ...), the unwrapped (no DDP, no
torch.compile) model state dict, the model's GPTConfig, its tokenizer (tokenizer.spec: 'gpt2' or a char
vocabulary), the optimizer and GradScaler states, the step, every RNG state and the run's config. It is
written with atomic_io.atomic_write (a temporary file in the same directory, fsync, rename), so a crash or
kill -9 mid-write leaves the previous checkpoint whole; it is never written with non-finite weights. Stages
talk to each other only through these files, and check what they read: readable, of the right stage, finite.
"""

import atexit
import math
import os
import random
import shutil
import tempfile
from dataclasses import asdict

import numpy as np
import torch

from atomic_io import atomic_write, remove_orphaned_temp_files
from model import GPT, PRETRAINED_REPOS, GPTConfig

CKPT_NAME = "ckpt.pt"
# the stages whose checkpoint's model is a policy (a language model without a scalar head): what a stage that
# starts from "the SFT model" accepts, as well as a GPT-2 name or a Hugging Face directory
POLICY_STAGES = ("sft", "dpo", "kto", "ppo", "grpo")
REWARD_STAGES = ("reward",)


# -----------------------------------------------------------------------------
# out_dir: a run never writes over another one unless asked to, and even then loses nothing until it has a
# checkpoint of its own

_replaced = {}  # realpath of an out_dir -> where its previous run waits until the new run's first checkpoint


def prepare_out_dir(out_dir, resume, overwrite, inputs):
    """Make out_dir ready for this run. Call only after every input has been validated, so that bad input
    never changes anything in out_dir. inputs: {config key: path} of every file and directory the run reads.

    resume: out_dir holds the run being continued (its checkpoint was loaded already). Otherwise out_dir must
    be new or empty, or overwrite given: the previous run is then moved aside to OUT_DIR.replaced, deleted
    when this run writes its first checkpoint (drop_replaced_run), and moved back if this run stops before
    that. Refused when out_dir holds one of the run's own inputs."""
    out_real = os.path.realpath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"out_dir {out_dir!r} is a file, expected a directory")
    for key, path in inputs.items():
        real = os.path.realpath(path) if path and os.path.exists(path) else None
        if not resume and real and (real == out_real or real.startswith(out_real + os.sep)):
            raise ValueError(f"out_dir {out_dir!r} holds this run's input --{key}={path}: the new run would replace "
                             f"it; choose another --out_dir")
    remove_orphaned_temp_files(out_dir)  # left by a run that was killed mid-write
    if resume:
        return
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise FileExistsError(f"out_dir {out_dir!r} already holds a run: pass --resume=True to continue it, "
                                  f"--overwrite=True to replace it, or choose another --out_dir")
        cwd = os.path.realpath(os.getcwd())
        if cwd == out_real or cwd.startswith(out_real + os.sep):
            raise ValueError(f"out_dir {out_dir!r} is the current directory or holds it: choose another --out_dir")
        aside = out_real + ".replaced"
        if os.path.exists(aside):
            raise FileExistsError(f"{aside} holds a run that an earlier --overwrite was replacing when it was stopped: "
                                  f"move it back to {out_dir} or delete it, then run again")
        os.rename(out_dir, aside)
        _replaced[out_real] = aside
        atexit.register(restore_replaced_run, out_real)
        print(f"out_dir: the previous run in {out_dir} is kept in {aside} until this run writes its first checkpoint")
    try:
        os.makedirs(out_dir, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()  # writable? better to know now than at the first checkpoint
    except OSError as e:
        restore_replaced_run(out_real)
        raise OSError(e.errno, f"cannot write in out_dir ({e.strerror})", out_dir) from None


def drop_replaced_run(out_dir):
    """This run has written its first checkpoint: the previous run it replaces (if any) goes."""
    aside = _replaced.pop(os.path.realpath(out_dir), None)
    if aside is not None:
        shutil.rmtree(aside)


def restore_replaced_run(out_real):
    """At exit, if this run stopped before its first checkpoint: its partial out_dir goes, the previous run
    comes back."""
    aside = _replaced.pop(out_real, None)
    if aside is not None:
        shutil.rmtree(out_real, ignore_errors=True)
        os.rename(aside, out_real)
        print(f"out_dir: this run stopped before its first checkpoint; the previous run is back in {out_real}")


# -----------------------------------------------------------------------------
# checkpoints

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


def save_checkpoint(out_dir, model, config, step, tokenizer, optimizer=None, scaler=None, extra=None, *, stage):
    """Atomically write out_dir/ckpt.pt. `model` is the raw model (not DDP-wrapped, not compiled);
    `tokenizer` is the tokenizer's spec (tok.spec), which later stages rebuild it from; `stage` the stage
    writing it ('sft', 'reward', ...), which the stages reading it check. Non-finite weights are never
    written: the checkpoint on disk stays the last finite one."""
    state = {
        "stage": stage,
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
    bad = first_nonfinite(state)
    if bad is not None:
        raise FloatingPointError(f"{bad} became NaN or infinite by step {step}; stopping. The last finite checkpoint "
                                 f"stays in {out_dir}")
    path = os.path.join(out_dir, CKPT_NAME)
    try:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    except RuntimeError as e:  # torch.save's own error for a failed write (a full disk, a file size limit)
        raise OSError(f"{path}: writing the checkpoint failed ({first_line(e)}); the previous one stays") from None
    drop_replaced_run(out_dir)
    return path


def first_line(error):
    """An exception's message cut to one short line (some, like an empty file's EOFError, have none)."""
    return (str(error).splitlines() or [type(error).__name__])[0][:120]


def named(path, key):
    """How a message names an input: '--key=path', or the path alone when no config key gave it."""
    return f"--{key}={path}" if key else path


def first_nonfinite(state):
    """'model weight NAME' for the first floating-point tensor holding a NaN or an infinity among a checkpoint's
    weights (its "model" and any other state dict in it, such as PPO's value model), or None. The optimizer's
    moments are not weights: they are left out."""
    for what, weights in state.items():
        is_state_dict = isinstance(weights, dict) and weights and all(isinstance(t, torch.Tensor) for t in weights.values())
        for name, t in weights.items() if is_state_dict else ():
            if t.is_floating_point() and not torch.isfinite(t).all():
                return f"{what} weight {name!r}"
    return None


def checkpoint_stage(ckpt):
    """The stage that wrote a checkpoint; for checkpoints from before they recorded it, read from what they hold."""
    if ckpt.get("stage"):
        return ckpt["stage"]
    if "reward_norm" in ckpt or ckpt["model_args"].get("scalar_head"):
        return "reward"
    return "ppo" if "value_model" in ckpt else "sft"


def load_checkpoint(path, stages=None, key=None, device="cpu"):
    """A checkpoint dict from a ckpt.pt file or a directory holding one, checked: readable (not truncated), of
    one of `stages` (None: any), with finite weights. key: the config key that named path, for the messages."""
    file = os.path.join(path, CKPT_NAME) if os.path.isdir(path) else path
    where = named(path, key)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{where}: no checkpoint at {file}")
    try:
        ckpt = torch.load(file, map_location=device, weights_only=True)
    except Exception as e:  # truncated, empty, or not a torch file: every way a file can fail to be one
        raise ValueError(f"{where}: {file} is not a readable checkpoint ({first_line(e)}); "
                         f"truncated, or not written by this project?") from None
    if not isinstance(ckpt, dict) or not {"model", "model_args", "tokenizer"} <= set(ckpt):
        raise ValueError(f"{where}: {file} is not a checkpoint of this project (expected model, model_args, tokenizer)")
    stage = checkpoint_stage(ckpt)
    if stages is not None and stage not in stages:
        raise ValueError(f"{where}: a checkpoint of {stage}.py; expected one of "
                         f"{', '.join(s + '.py' for s in stages)}")
    bad = first_nonfinite(ckpt)
    if bad is not None:
        raise ValueError(f"{where}: {bad} holds NaN or infinite values")
    return ckpt


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


def is_checkpoint(path):
    """A checkpoint directory of this project (holding ckpt.pt) or a ckpt.pt-like file itself."""
    return os.path.isfile(os.path.join(path, CKPT_NAME)) or (path.endswith(".pt") and os.path.isfile(path))


def check_pretrained(init_from, stages, key):
    """init_from is not a checkpoint: fine where a policy will do, if it is a GPT-2 name or a directory (whose
    config.json and weights from_pretrained checks)."""
    if stages is not None and not set(stages) & set(POLICY_STAGES):  # only a checkpoint of this project will do
        raise ValueError(f"{named(init_from, key)}: no checkpoint of {', '.join(s + '.py' for s in stages)} there "
                         f"(no {os.path.join(init_from, CKPT_NAME)})")
    if not (os.path.isdir(init_from) or init_from in PRETRAINED_REPOS):
        raise ValueError(f"{named(init_from, key)}: unknown model {init_from!r}: expected a checkpoint directory, one "
                         f"of {', '.join(PRETRAINED_REPOS)}, or a directory with config.json and model.safetensors")


def tokenizer_of(init_from, stages=POLICY_STAGES, key=None):
    """The tokenizer spec of what load_model(init_from, stages=stages) loads, checked as it would be, without
    building the model (which would also draw from the random number generator)."""
    if is_checkpoint(init_from):
        return load_checkpoint(init_from, stages, key)["tokenizer"]
    check_pretrained(init_from, stages, key)
    return "gpt2"


def load_reward_model(reward_dir, key="reward_dir"):
    """A finished reward model of reward.py: normalised (reward_norm in its checkpoint) with a finite std > 0.
    Returns (model, tokenizer spec)."""
    model, tok_spec, ckpt = load_model(reward_dir, stages=REWARD_STAGES, key=key)
    norm = ckpt.get("reward_norm")
    if norm is None:
        raise ValueError(f"{named(reward_dir, key)}: a reward model that was not normalised (reward.py stopped before "
                         f"the end? --resume=True there finishes it)")
    if not (math.isfinite(norm["raw_std"]) and norm["raw_std"] > 0):
        raise ValueError(f"{named(reward_dir, key)}: its normalisation has std {norm['raw_std']}; expected a finite std > 0")
    return model, tok_spec


def load_model(init_from, dropout=0.0, stages=POLICY_STAGES, key=None):
    """A GPT to start a stage from, and its tokenizer's spec (for get_tokenizer): a checkpoint of this project
    (out_dir of an earlier stage, or its ckpt.pt) written by one of `stages` (None: any), a GPT-2 name
    ('gpt2', 'gpt2-medium', ...) or a directory in the Hugging Face layout (both policies). key: the config key
    naming init_from, for the messages. Returns (model, tokenizer spec, ckpt or None)."""
    if is_checkpoint(init_from):
        ckpt = load_checkpoint(init_from, stages, key)
        return model_from_checkpoint(ckpt).set_dropout(dropout), ckpt["tokenizer"], ckpt
    check_pretrained(init_from, stages, key)
    return GPT.from_pretrained(init_from, dropout=dropout), "gpt2", None
