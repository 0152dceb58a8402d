"""Metrics logging shared by the stages: a console line, metrics.jsonl in out_dir, a PNG of the curves,
and optionally Weights & Biases. Only the master process logs."""

import json
import os
import time


class MetricsLogger:

    def __init__(self, out_dir, enabled=True, wandb_project=None, run_name=None, config=None):
        self.enabled = enabled
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.history = []
        self.t0 = time.time()
        self.wandb = None
        if enabled and wandb_project:
            import wandb  # optional: pip install wandb
            self.wandb = wandb.init(project=wandb_project, name=run_name, config=config)

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
        if total_steps and step > 0:
            eta = f" | eta {(time.time() - self.t0) / step * (total_steps - step):.0f}s"
        shown = " | ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"step {step}{'/' + str(total_steps) if total_steps else ''} | {shown}{eta}", flush=True)

    def plot(self, png_path, keys, title=""):
        """One panel per metric key, against step."""
        if not self.enabled:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
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
        tmp = png_path + ".tmp.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, png_path)

    def finish(self):
        if self.wandb is not None:
            self.wandb.finish()
