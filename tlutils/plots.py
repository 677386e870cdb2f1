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
    return _finish_row(fig, axes[0], title)


def _finish_row(fig, axes, title: str | None = None, legend_loc: str = "best", fontsize: int = 8):
    """The common last touches of a row of panels: a legend on the last one, a title, the layout."""
    axes[-1].legend(fontsize=fontsize, loc=legend_loc)
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


def plot_filter_grids(weights: Mapping[str, torch.Tensor], ncols: int = 8, size: float = 0.55):
    """First-layer filters (out, 3, k, k) of several networks, one panel per network, side by side.

    Each filter is rescaled to [0, 1] on its own (grey = 0.5 when symmetric): only its
    pattern and its colour balance are shown, not its magnitude.
    """
    if not weights:
        raise ValueError("give at least one {name: conv1 weight}")
    nrows = int(np.ceil(max(len(w) for w in weights.values()) / ncols))
    fig = plt.figure(figsize=(len(weights) * (ncols * size + 0.4), nrows * size + 0.9))
    subfigs = np.atleast_1d(fig.subfigures(1, len(weights), wspace=0.05))
    for sub, (name, w) in zip(subfigs, weights.items()):
        w = w.detach().cpu().float()
        lo, hi = w.amin(dim=(1, 2, 3), keepdim=True), w.amax(dim=(1, 2, 3), keepdim=True)
        w = (w - lo) / (hi - lo + 1e-8)
        axes = sub.subplots(nrows, ncols, squeeze=False, gridspec_kw=dict(wspace=0.1, hspace=0.1))
        sub.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.72)
        for i, ax in enumerate(axes.flat):
            ax.set_xticks([])
            ax.set_yticks([])
            if i < len(w):
                ax.imshow(w[i].permute(1, 2, 0).numpy(), interpolation="nearest")
            else:
                ax.axis("off")
        k = w.shape[-1]
        sub.suptitle(f"{name}\n{len(w)} filters, {k}x{k} pixels, RGB", fontsize=9)
    return fig


def plot_activation_maps(images: torch.Tensor, maps: Mapping[str, torch.Tensor],
                         labels: Sequence[str] | None = None, size: float = 1.25):
    """One row per image: the image, then each block's activation map averaged over channels.

    ``images`` are (n, 3, H, W) in [0, 1]; ``maps[block]`` is (n, C, h, w). Each map is
    scaled to its own maximum, so the colour shows where a block responds, not how much.
    """
    n = len(images)
    cols = ["input", *maps]
    fig, axes = plt.subplots(n, len(cols), figsize=(len(cols) * size, n * size * 1.05 + 0.4), squeeze=False)
    for i in range(n):
        for j, name in enumerate(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "input":
                ax.imshow(images[i].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy())
                if labels is not None:
                    ax.set_ylabel(labels[i], fontsize=7)
            else:
                m = maps[name][i].detach().cpu().float().mean(0)
                ax.imshow((m / (m.max() + 1e-8)).numpy(), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            if i == 0:
                h, w = (images.shape[-2:] if name == "input" else maps[name].shape[-2:])
                ax.set_title(f"{name}\n{h}x{w} px", fontsize=8)
    fig.tight_layout()
    return fig


def plot_transfer_curves(curves: Mapping[str, Mapping[int, Sequence[float]]], blocks: Sequence[str] = BACKBONE,
                         chance: float | None = None, title: str | None = None):
    """Yosinski-style transfer curves: accuracy against the number ``k`` of copied blocks.

    ``curves[name][k]`` lists one accuracy per seed; the plot shows the mean with error bars
    of one standard deviation and every seed as a faint dot.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    markers = ["o", "s", "^", "D"]
    for i, (name, curve) in enumerate(curves.items()):
        ks = sorted(curve)
        means = [float(np.mean(curve[k])) for k in ks]
        stds = [float(np.std(curve[k], ddof=1)) if len(curve[k]) > 1 else 0.0 for k in ks]
        offset = (i - (len(curves) - 1) / 2) * 0.06  # keep overlapping error bars apart
        line = ax.errorbar(np.array(ks) + offset, means, yerr=stds, marker=markers[i % 4], ms=5,
                           capsize=3, label=name)
        for k in ks:
            ax.scatter([k + offset] * len(curve[k]), curve[k], s=9, alpha=0.35, color=line[0].get_color())
    all_ks = sorted({k for c in curves.values() for k in c})
    names = ["0\n(scratch)" if k == 0 else f"{k}\n(..{blocks[k - 1]})" for k in all_ks]
    ax.set_xticks(all_ks, names, fontsize=8)
    ax.set_xlabel("k = number of blocks copied, from the input up (stem = conv1)")
    ax.set_ylabel("target validation accuracy (fraction)")
    ax.set_ylim(0, 1.02)
    return _finish(fig, ax, chance=chance, title=title, legend_loc="lower left")


def plot_by_block(values: Mapping[str, Mapping[str, float]], ylabel: str, ylim: tuple[float, float] | None = (0, 1.02),
                  chance: float | None = None, title: str | None = None):
    """One line per series across the backbone blocks (e.g. CKA or probe accuracy per block)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for name, vals in values.items():
        blocks = list(vals)
        ax.plot(range(len(blocks)), [vals[b] for b in blocks], marker="o", label=name)
    blocks = list(next(iter(values.values())))
    ax.set_xticks(range(len(blocks)), blocks)
    ax.set_xlabel("block (input -> output)")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return _finish(fig, ax, chance=chance, title=title)


def plot_shift_grid(reports: Sequence[Mapping], index: int = 0, size: float = 1.1):
    """One example image per (kind, severity) of a severity sweep: kinds as rows, severities as columns."""
    kinds = list(dict.fromkeys(r["kind"] for r in reports))
    sevs = sorted({r["severity"] for r in reports})
    fig, axes = plt.subplots(len(kinds), len(sevs), figsize=(len(sevs) * size + 1.0, len(kinds) * size),
                             squeeze=False)
    by_key = {(r["kind"], r["severity"]): r for r in reports}
    for i, kind in enumerate(kinds):
        for j, s in enumerate(sevs):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            r = by_key.get((kind, s))
            if r is not None:
                img = r["images"][index].detach().cpu().clamp(0, 1)
                ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0).numpy(),
                          cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
            if i == 0:
                ax.set_title(f"severity {s}", fontsize=8)
            if j == 0:
                ax.set_ylabel(kind, fontsize=8)
    fig.tight_layout()
    return fig


_SWEEP_LABELS = {"accuracy": "classifier accuracy (fraction)",
                 "mmd2": "feature MMD$^2_u$ vs clean (RBF, no unit)",
                 "probe_acc": "probe on shifted data (fraction)"}


def plot_severity_sweep(reports: Sequence[Mapping], keys: Sequence[str] = ("accuracy", "mmd2", "probe_acc"),
                        chance: float | None = None):
    """Metrics of a severity sweep against severity, one panel per metric and a line per kind."""
    kinds = list(dict.fromkeys(r["kind"] for r in reports))
    keys = [k for k in keys if all(k in r for r in reports)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.3 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for kind in kinds:
            rows = sorted((r for r in reports if r["kind"] == kind), key=lambda r: r["severity"])
            ax.plot([r["severity"] for r in rows], [r[key] for r in rows], marker="o", ms=3, label=kind)
        if chance is not None and key != "mmd2":
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        if key != "mmd2":
            ax.set_ylim(0, 1.02)
        ax.set_xlabel("shift severity (0 = clean)")
        ax.set_ylabel(_SWEEP_LABELS.get(key, key))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_decision_matrix(acc: Mapping[str, Mapping[int, Mapping[str, float]]],
                         strategies: Sequence[str] | None = None, size_label: str = "training images per class",
                         condition_label: str = "target domain (similar to the source on the left)"):
    """Heatmap of the measured decision matrix: the best strategy per cell and its margin.

    ``acc[condition][size][strategy]`` is a validation accuracy. Each cell is coloured by its
    winning strategy, shaded by how clearly it wins (the margin over the runner-up, in
    percentage points), and labelled with the winner, its accuracy and the margin.
    """
    from matplotlib.colors import to_rgb

    conds = list(acc)
    sizes = sorted({n for by_size in acc.values() for n in by_size}, reverse=True)  # large data on top
    strategies = list(strategies or dict.fromkeys(s for bs in acc.values() for a in bs.values() for s in a))
    palette = dict(zip(strategies, ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"]))
    rgb = np.ones((len(sizes), len(conds), 3))
    fig, ax = plt.subplots(figsize=(2.3 * len(conds) + 1.5, 1.15 * len(sizes) + 1.6))
    for i, n in enumerate(sizes):
        for j, c in enumerate(conds):
            ranked = sorted(acc[c][n].items(), key=lambda kv: -kv[1])
            (best, a1), (_, a2) = ranked[0], ranked[1]
            margin = a1 - a2
            strength = 0.35 + 0.65 * min(margin / 0.10, 1.0)  # a 10-point margin or more: full colour
            rgb[i, j] = 1 - strength * (1 - np.array(to_rgb(palette[best])))
            ax.text(j, i, f"{best}\n{a1:.0%} (+{100 * margin:.1f} pts)", ha="center", va="center", fontsize=8)
    ax.imshow(rgb, aspect="auto")
    ax.set_xticks(range(len(conds)), conds, fontsize=8)
    ax.set_yticks(range(len(sizes)), [str(n) for n in sizes])
    ax.set_xlabel(condition_label)
    ax.set_ylabel(size_label)
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[s]) for s in strategies]
    ax.legend(handles, strategies, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(strategies))
    ax.set_title("best strategy (pale: wins by < 10 points over the runner-up)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_size_curves(acc: Mapping[str, Mapping[int, float | Sequence[float]]], chance: float | None = None,
                     xlabel: str = "training images per class (log scale)",
                     ylabel: str = "target val accuracy (fraction)", title: str | None = None):
    """Accuracy against training-set size, one line per strategy: ``acc[strategy][size]``.

    A size may hold one accuracy per seed (a list): the line then shows the mean and a band
    the min-max range over seeds.
    """
    fig, ax = plt.subplots(figsize=(6.2, 4))
    markers = "osD^v<>"
    for i, (name, by_size) in enumerate(acc.items()):
        sizes = sorted(by_size)
        runs = [np.atleast_1d(np.asarray(by_size[s], dtype=float)) for s in sizes]
        line, = ax.plot(sizes, [r.mean() for r in runs], marker=markers[i % len(markers)], ms=5, label=name)
        if any(len(r) > 1 for r in runs):
            ax.fill_between(sizes, [r.min() for r in runs], [r.max() for r in runs], color=line.get_color(), alpha=0.18)
    ax.set_xscale("log")
    all_sizes = sorted({s for by_size in acc.values() for s in by_size})
    ax.set_xticks(all_sizes, [str(s) for s in all_sizes])
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _finish(fig, ax, chance=chance, title=title)


def plot_lr_find(result, title: str | None = None):
    """An LR range test (:func:`tlutils.train.lr_find`): loss against LR, with the minimum,
    the steepest point and the suggestion marked."""
    fig, ax = plt.subplots(figsize=(6.2, 4))
    ax.plot(result.lrs, result.raw_losses, color="lightgrey", lw=1, label="batch loss")
    ax.plot(result.lrs, result.losses, lw=1.8, label="smoothed loss")
    for lr, style, name in ((result.min_lr, ":", "loss minimum"), (result.steepest_lr, "-.", "steepest descent"),
                            (result.suggestion, "--", f"suggestion ({result.rule})")):
        ax.axvline(lr, ls=style, color="black" if name.startswith("sugg") else "grey", lw=1.2,
                   label=f"{name}: {lr:.2g}")
    ax.set_xscale("log")
    top = max(result.losses[: max(1, len(result.losses) // 5)]) * 1.6
    ax.set_ylim(min(result.losses) * 0.8, top)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss (cross-entropy, nats)")
    return _finish(fig, ax, title=title, legend_loc="upper left")


def _finish(fig, ax, chance: float | None = None, title: str | None = None, legend_loc: str = "best"):
    """The common last touches of a one-axes figure: chance line, grid, legend, title, layout."""
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc=legend_loc)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_lr_sweep(table: Mapping[str, Mapping], keys: Mapping[str, str], group: Sequence[str] = ("head", "BN"),
                  lr_key: str = "LR / peak", marks: Mapping[str, float] | None = None,
                  chance: Mapping[str, float] | None = None, xlabel: str = "learning rate / pretraining peak",
                  title: str | None = None):
    """Accuracy against learning rate (log x), one line per ``group`` value, bands of mean +- sd.

    ``table`` is a :func:`tlutils.finetune.table` (rows with ``lr_key``, the ``group`` columns and
    ``key`` / ``key sd`` columns); ``keys`` maps each metric to its panel's y label; ``marks`` draws
    labelled vertical lines (e.g. the head's learning rate) and ``chance`` a dotted level per metric.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8), squeeze=False)
    lines: dict[tuple, list] = {}
    for row in table.values():
        lines.setdefault(tuple(row[g] for g in group), []).append(row)
    for ax, (key, ylabel) in zip(axes[0], keys.items()):
        for name, rows in lines.items():
            rows = sorted(rows, key=lambda r: r[lr_key])
            x = np.array([r[lr_key] for r in rows])
            m = np.array([r[key] for r in rows])
            s = np.array([r.get(f"{key} sd", 0.0) for r in rows])
            label = ", ".join(f"{g} {v}" for g, v in zip(group, name))
            (line,) = ax.plot(x, m, marker="o", ms=3, label=label)
            ax.fill_between(x, np.clip(m - s, 0, 1), np.clip(m + s, 0, 1), color=line.get_color(), alpha=0.2)
        for mark, value in (marks or {}).items():
            ax.axvline(value, color="black", lw=0.8, ls="--")
            ax.annotate(mark, (value, 1.0), fontsize=7, rotation=90, va="top", ha="right")
        if chance and key in chance:
            ax.axhline(chance[key], color="grey", ls=":", lw=1, label="chance")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return _finish_row(fig, axes[0], title, legend_loc="lower left", fontsize=7)


def plot_spike_and_accuracy(grads: Mapping[str, Sequence[dict]], accs: Mapping[str, Sequence[dict]],
                            key: str = "backbone", chance: float | None = None, title: str | None = None):
    """Gradient norm of ``key`` at every step (top, log scale) above accuracy on a fixed subset (bottom).

    ``grads[run]`` is a :class:`~tlutils.monitor.GradNormMonitor`'s ``steps`` (step ``k``: the gradient
    after ``k`` updates) and ``accs[run]`` a :class:`~tlutils.monitor.StepAccuracyMonitor`'s (step ``k``:
    accuracy after ``k`` updates), so a point of one panel lies above the matching point of the other.
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.6), sharex=True)
    for name in grads:
        (line,) = top.plot([s["step"] for s in grads[name]], [s[key] for s in grads[name]], marker=".", label=name)
        if name in accs:
            bottom.plot([s["step"] for s in accs[name]], [s["acc"] for s in accs[name]], marker=".",
                        color=line.get_color(), label=name)
    top.set_yscale("log")
    top.set_ylabel(f"{key} gradient L2 norm")
    top.grid(alpha=0.3)
    top.legend(fontsize=8)
    if chance is not None:
        bottom.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    bottom.set_ylim(0, 1.02)
    bottom.set_ylabel("target accuracy, fixed val subset")
    bottom.set_xlabel("training step (updates made so far)")
    bottom.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
