"""
Learning curves for the rl_basics scripts: a moving average, and one PNG of one or more panels written
with matplotlib's Agg backend (no display needed). Config parsing is ../configurator.py's, as for
every stage.
"""

import os

import numpy as np

from atomic_io import atomic_save_figure
from logger import pyplot


def moving_average(x, window):
    """Mean of the last `window` values at each point (fewer at the start): (N,) -> (N,)."""
    c = np.cumsum(np.insert(np.asarray(x, dtype=np.float64), 0, 0.0))
    n = np.arange(1, len(x) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


def save_curves(path, panels, xlabel, title, smooth=1, hlines=None, ylim=None):
    """One PNG with a panel per (ylabel, {label: y}) in `panels`, each curve smoothed by a moving
    average of `smooth` points; `hlines` is an optional {label: y} of reference levels per panel and
    `ylim` an optional (bottom, top) for every panel."""
    plt = pyplot()

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for i, (ax, (ylabel, curves)) in enumerate(zip(axes[0], panels)):
        for label, y in curves.items():
            ax.plot(np.arange(1, len(y) + 1), moving_average(y, smooth), label=label)
        for label, level in (hlines[i] if hlines else {}).items():
            ax.axhline(level, color="gray", linestyle="--", linewidth=1, label=label)
        ax.set_ylim(ylim)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    atomic_save_figure(fig, path)
    print(f"saved {path}")
