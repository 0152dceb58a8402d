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
import math
import os
import random
import re
import sys
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
    check_device(device)
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
        # bf16 where the hardware has it; fp16 on older GPUs; float32 on CPUs without bf16 instructions
        if device_type == "cuda":
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "bfloat16" if cpu_has_bf16() else "float32"
    if device_type == "cpu" and dtype == "bfloat16" and not cpu_has_bf16() and rank == 0:
        print(f"warning: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bf16 matrix instructions: bf16 "
              f"autocast runs ~100x slower than float32 here; pass --dtype=float32 (results differ in rounding)",
              file=sys.stderr)
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


def check_device(device):
    """A ValueError, before anything runs, for a device this machine does not have."""
    m = re.fullmatch(r"auto|cpu|cuda(?::(\d+))?", device)
    if m is None:
        raise ValueError(f"--device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device={device!r}: PyTorch sees no CUDA GPU on this machine; use --device=cpu (or auto)")
        if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
            raise ValueError(f"--device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")


def cpu_has_bf16():
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16, AMX, or AVX512 emulation). Without them
    (an AVX2-only CPU) a bf16 matmul falls back to a reference loop: measured 230 ms against 2 ms in float32
    for 512 x 512 on an AVX2 AMD EPYC core."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


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


def micro_batches(model, step_items, batch_size, rt):
    """This rank's micro-batches of one optimizer step, for gradient accumulation. step_items is the step's
    global batch, the same list on every rank (batch_size x grad_accum_steps x world_size items); each
    micro-step takes world_size x batch_size of them and this rank its batch_size. Yields (items, context):
    run the micro-step's forward and backward inside the context, DDP's no_sync() on all but the last, so
    that gradients are all-reduced once per optimizer step."""
    per_micro = batch_size * rt.world_size
    n_micro = len(step_items) // per_micro
    for micro in range(n_micro):
        start = micro * per_micro + rt.rank * batch_size
        sync = model.no_sync() if rt.ddp and micro < n_micro - 1 else contextlib.nullcontext()
        yield step_items[start:start + batch_size], sync


def backward_share(loss_sum, n_step, rt):
    """Backward of this micro-batch's share of the optimizer step's mean loss: loss_sum is the sum of its
    terms (token or pair losses) here, n_step the number of terms in the whole step, over every micro-batch
    and rank. DDP averages gradients over ranks, hence the factor world_size: the accumulated gradient is
    then exactly that of sum over the step / n_step, as in one big batch."""
    rt.scaler.scale(loss_sum * rt.world_size / n_step).backward()


def accumulate(sums, metrics):
    """Add a batch's {name: tensor} into running sums (a dict, updated in place and returned)."""
    for name, value in metrics.items():
        sums[name] = sums.get(name, 0) + value.detach()
    return sums


def reduce_metrics(metrics, divisor=1.0):
    """{name: scalar tensor} summed over all ranks in one all-reduce, divided by divisor -> {name: float}."""
    values = all_reduce_sum(torch.stack([v.detach().float() for v in metrics.values()])) / divisor
    return dict(zip(metrics, values.tolist()))


def check_finite(metrics, step, out_dir):
    """Stop the stage with one line when a number it is about to log (a loss, a gradient norm, a validation
    metric) is NaN or infinite: training on is training on garbage. Checkpoints are written only after this
    check, and save_checkpoint refuses non-finite weights, so the one in out_dir is the last finite one.
    None values (a gradient norm that fp16 loss scaling skipped) are not checked."""
    for name, value in metrics.items():
        if value is not None and not math.isfinite(value):
            raise FloatingPointError(f"{name} became {value} at step {step}; stopping. The last finite checkpoint "
                                     f"stays in {out_dir}")


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
        # active exception") after a finished run. The DDP wrapper, which still holds the group, is freed
        # once main() has returned: configurator.run_cli collects it before the interpreter shuts down
        dist.barrier()
        dist.destroy_process_group()
