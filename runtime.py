"""
Device, precision and DDP set-up, decided once at the start of every stage script.

    rt = setup_runtime(config.device, config.dtype, config.seed)
    with rt.autocast:            # bf16/fp16 autocast, or nothing for float32
        loss = ...
    rt.scaler.scale(loss).backward()   # a GradScaler enabled only for float16

DDP only from torchrun's environment variables (RANK, LOCAL_RANK, WORLD_SIZE): nccl on CUDA, gloo on
CPU. Only the master process (rank 0) logs and saves.
"""

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Runtime:
    device: str  # "cpu", "cuda", "cuda:1", ...
    device_type: str  # "cpu" or "cuda"
    dtype: torch.dtype  # the autocast dtype (float32 = no autocast)
    autocast: contextlib.AbstractContextManager
    scaler: torch.amp.GradScaler
    ddp: bool
    rank: int
    local_rank: int
    world_size: int
    master: bool  # rank 0: logs, evaluates samples and writes checkpoints


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def setup_runtime(device="auto", dtype="auto", seed=1337):
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank, local_rank, world_size = 0, 0, 1
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if ddp:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
        if device.startswith("cuda"):
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if dtype == "auto":
        # bf16 where the hardware has it (and on CPU, where autocast supports it); fp16 on older GPUs
        dtype = "float16" if device_type == "cuda" and not torch.cuda.is_bf16_supported() else "bfloat16"
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of auto, {', '.join(DTYPES)}")
    if device_type == "cpu" and dtype == "float16":
        raise ValueError("dtype 'float16' needs a GPU; use 'bfloat16' or 'float32' on CPU")
    torch_dtype = DTYPES[dtype]
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = (contextlib.nullcontext() if torch_dtype == torch.float32
                else torch.autocast(device_type=device_type, dtype=torch_dtype))
    # loss scaling is needed only for float16, whose small exponent range underflows gradients
    scaler = torch.amp.GradScaler(device_type, enabled=(torch_dtype == torch.float16))
    seed_everything(seed)
    return Runtime(device, device_type, torch_dtype, autocast, scaler, ddp, rank, local_rank, world_size, rank == 0)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def all_reduce_sum(x):
    """Sum a tensor over all ranks (in place, returned); the identity without DDP."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def gather_lists(items, rt):
    """Concatenate a Python list from every rank, in rank order (evaluation split across ranks); the list
    itself without DDP."""
    if not rt.ddp:
        return items
    out = [None] * rt.world_size
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def batch_indices(n_examples, global_batch, seed, step):
    """The examples of optimizer step `step`: drawn with a generator seeded by (seed, step), so every
    rank draws the same global batch and a resumed run draws exactly what the uninterrupted one would."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(n_examples, (global_batch,), generator=g).tolist()


def shard(items, rt):
    """This rank's share of a list (every world_size-th item), for evaluation split across ranks."""
    return items[rt.rank::rt.world_size]


def wrap_model(model, rt, compile=False):
    """torch.compile (optional), then DistributedDataParallel under torchrun. Keep a reference to the
    unwrapped model: that is what gets saved and sampled from."""
    if compile:
        model = torch.compile(model)
    if rt.ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model, device_ids=[rt.local_rank] if rt.device_type == "cuda" else None)
    return model


def teardown(rt):
    if rt.ddp:
        # wait for every rank (rank 0 may still be writing the last checkpoint): a rank that tore down gloo
        # while another still held its connections was aborted at exit ("terminate called without an
        # active exception") after a finished run
        dist.barrier()
        dist.destroy_process_group()
