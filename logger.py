"""Metrics logging shared by the stages: a console line, metrics.jsonl in out_dir, a PNG of the curves,
and optionally Weights & Biases. Only the master process logs."""

import dataclasses
import json
import os
import time

from atomic_io import atomic_save_figure, atomic_write_text


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed), imported on first use so that
    a stage that plots nothing never loads matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


class MetricsLogger:

    def __init__(self, config, enabled=True, start_step=0):
        """config: the stage's config dataclass (its out_dir and wandb_project); enabled: on the master
        process only; start_step: the step a resumed run starts from."""
        self.enabled = enabled
        self.path = os.path.join(config.out_dir, "metrics.jsonl")
        self.history = []
        if enabled and start_step and os.path.isfile(self.path):
            # a resumed run: keep the history up to its checkpoint, so the curves cover the whole run; what was
            # logged after the checkpoint is dropped, because the resumed run computes those steps again
            with open(self.path) as f:
                self.history = [r for r in map(json.loads, filter(str.strip, f)) if r["step"] <= start_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.history))
        self.t0 = time.time()
        self.start_step = start_step
        self.t_last, self.last_step = self.t0, start_step  # of the previous training line
        self.wandb = None
        if enabled and config.wandb_project:
            import wandb  # optional: pip install wandb
            self.wandb = wandb.init(project=config.wandb_project, name=os.path.basename(os.path.normpath(config.out_dir)),
                                    config=dataclasses.asdict(config))

    def log_step(self, step, metrics, lr, grad_norm, total_steps):
        """A training line: the step's metrics, the learning rate, the gradient norm before clipping (None
        when there is no clipping) and the wall-clock time per step since the previous training line."""
        now = time.time()
        timing = {"time_per_step_s": (now - self.t_last) / max(1, step - self.last_step)}
        self.t_last, self.last_step = now, step
        extra = {"lr": lr} if grad_norm is None else {"lr": lr, "grad_norm": grad_norm}
        self.log(step, {**metrics, **extra, **timing}, total_steps)

    def log(self, step, metrics, total_steps=None):
        """Record a dict of named numbers for this step and print them on one line with an ETA."""
        if not self.enabled:
            return
        metrics = {k: float(v) for k, v in metrics.items()}
        record = {"step": step, "time": round(time.time() - self.t0, 2), **metrics}
        self.history.append(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)
        eta = ""
        if total_steps and step > self.start_step:  # seconds per step of this run so far x steps left
            eta = f" | eta {(time.time() - self.t0) / (step - self.start_step) * (total_steps - step):.0f}s"
        shown = " | ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"step {step}{'/' + str(total_steps) if total_steps else ''} | {shown}{eta}", flush=True)

    def plot(self, png_path, keys, title=""):
        """One panel per metric key, against step."""
        if not self.enabled:
            return
        plt = pyplot()
        keys = [k for k in keys if any(k in r for r in self.history)]
        if not keys:
            return
        fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
        for ax, key in zip(axes[0], keys):
            points = [(r["step"], r[key]) for r in self.history if key in r]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 30 else None)
            ax.set_title(key)
            ax.set_xlabel("step")
        fig.suptitle(title)
        fig.tight_layout()
        atomic_save_figure(fig, png_path)

    def finish(self):
        if self.wandb is not None:
            self.wandb.finish()
