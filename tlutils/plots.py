"""Matplotlib figures used across the labs. Every function returns the Figure."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .models import BLOCKS

BACKBONE = BLOCKS[:-1]


def show_images(images: torch.Tensor, labels: Sequence[int] | None = None,
                classes: Sequence[str] | None = None, ncols: int = 8, size: float = 1.2,
                title: str | None = None, titles: Sequence[str] | None = None,
                highlight: Sequence[bool] | None = None):
    """A grid of (n, C, H, W) images in [0, 1] (un-normalised), titled with their class.

    ``titles`` replaces the class names above the images; images whose ``highlight`` is true
    get a red title and frame.
    """
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].detach().cpu().clamp(0, 1)
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.permute(1, 2, 0).numpy())
        red = highlight is not None and bool(highlight[i])
        if titles is not None:
            ax.set_title(titles[i], fontsize=7, color="red" if red else "black")
        elif labels is not None:
            lab = int(labels[i])
            ax.set_title(classes[lab] if classes else str(lab), fontsize=7, color="red" if red else "black")
        if red:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_histories(histories: Mapping[str, Sequence[dict]], keys: Sequence[str] = ("val_acc",),
                   chance: float | Mapping[str, float] | None = None, xlabel: str = "epoch",
                   title: str | None = None):
    """Learning curves of several runs, one panel per key (e.g. ``val_acc``, ``source_acc``).

    ``chance`` draws a chance line on every accuracy panel, or per key (``{"val_acc": 0.1}``).
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, hist in histories.items():
            rows = [r for r in hist if r.get(key) is not None]
            x = [r.get("x", r["epoch"]) for r in rows]
            ax.plot(x, [r[key] for r in rows], marker="o", ms=3, label=name)
        level = chance.get(key) if isinstance(chance, Mapping) else chance
        if level is not None and "acc" in key:
            ax.axhline(level, color="grey", ls=":", lw=1, label="chance")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(key.replace("_", " ") + (" (fraction)" if "acc" in key else ""))
        if "acc" in key:
            ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_step_series(runs: Mapping[str, Sequence[dict]], blocks: Sequence[str] = BACKBONE,
                     ylabel: str = "gradient L2 norm", log: bool = True, title: str | None = None):
    """Per-block series recorded every step (gradient norms, weight drift), one panel per run."""
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.6), squeeze=False, sharey=True)
    for ax, (name, steps) in zip(axes[0], runs.items()):
        x = np.arange(len(steps))
        for b in blocks:
            ax.plot(x, [s.get(b, np.nan) for s in steps], lw=1.2, label=b)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training step")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_bars(values: Mapping[str, Mapping[str, float]], ylabel: str, title: str | None = None,
              log: bool = False):
    """Grouped bars: ``values[run][category]``, e.g. final weight drift per block per run.

    Each bar is labelled with its value (``0`` bars, e.g. frozen blocks, read "0").
    """
    runs = list(values)
    cats = list(next(iter(values.values())))
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(1.2 * len(cats) + 3, 3.6))
    for i, r in enumerate(runs):
        bars = ax.bar(np.arange(len(cats)) + i * width, [values[r][c] for c in cats], width, label=r)
        ax.bar_label(bars, labels=[f"{values[r][c]:.2g}" for c in cats], fontsize=7)
    if log:
        ax.set_yscale("log")
    ax.set_xticks(np.arange(len(cats)) + width * (len(runs) - 1) / 2, cats)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_filters(weight: torch.Tensor, ncols: int = 8, title: str | None = None):
    """First-layer filters (out, 3, k, k) as small RGB tiles, each rescaled to [0, 1]."""
    w = weight.detach().cpu()
    w = (w - w.amin(dim=(1, 2, 3), keepdim=True)) / (w.amax(dim=(1, 2, 3), keepdim=True)
                                                      - w.amin(dim=(1, 2, 3), keepdim=True) + 1e-8)
    return show_images(w, ncols=ncols, size=0.8, title=title)
