"""The optimizer and learning-rate schedule every stage uses (as in nanoGPT)."""

import inspect
import math

import torch


def configure_adamw(model, learning_rate, weight_decay, betas, device_type):
    """AdamW with weight decay on the 2-D weights (matmuls, embeddings) only, not on biases and
    LayerNorm gains: decaying those just pulls activations toward zero."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # the fused kernel (one kernel for every parameter, on CUDA and, since torch 2.4, on CPU) is several
    # times faster than the per-tensor loop; on a tiny model the loop can cost more than the backward pass
    fused = device_type in ("cuda", "cpu") and "fused" in inspect.signature(torch.optim.AdamW).parameters
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **({"fused": True} if fused else {}))


def lr_at(step, learning_rate, min_lr, warmup_iters, max_iters):
    """Linear warm-up over warmup_iters, then cosine decay to min_lr at max_iters."""
    if step < warmup_iters:
        return learning_rate * (step + 1) / (warmup_iters + 1)
    if step >= max_iters:
        return min_lr
    progress = (step - warmup_iters) / max(1, max_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


def optimizer_step(model, optimizer, scaler, grad_clip):
    """One update after the backward passes: unscale (fp16 only) before clipping so the clip sees true
    gradient norms, clip (grad_clip 0: measure the norm only), step, zero the gradients. Returns the
    pre-clip gradient norm as a float, for the log and the NaN guard; None when fp16 loss scaling found
    inf/NaN gradients: the scaler then skips the step and lowers its scale, which is normal."""
    scaler.unscale_(optimizer)
    # max_norm inf: the gradients are multiplied by min(1, inf / norm) = 1.0, i.e. left exactly as they are
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf")).item()
    skipped = scaler.is_enabled() and not math.isfinite(grad_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return None if skipped else grad_norm
