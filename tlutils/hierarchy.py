"""Yosinski-style transfer experiments: copy the first k blocks, then train, frozen or fine-tuned.

:func:`transfer_run` trains one network built by :func:`transfer_blocks`;
:func:`curve_stats` turns the accuracies of several seeds into means and spreads.
"""
from __future__ import annotations

import statistics
from typing import Mapping, Sequence

import torch
from torch import nn

from . import freeze as fz
from .freeze import block_parameters
from .models import BLOCKS, ResNet
from .train import History, evaluate, fit
from .world import TaskData


def transfer_blocks(pretrained: ResNet, k: int, num_classes: int, freeze: bool = True,
                    seed: int | None = None) -> ResNet:
    """A freshly initialised network whose first ``k`` backbone blocks are copies of ``pretrained``'s.

    Blocks count as in :data:`BLOCKS`: ``k=1`` copies the stem (``conv1`` + ``bn1``),
    ``k=2`` also ``layer1``, ..., ``k=5`` the whole backbone; ``k=0`` is training from
    scratch. The copies include BatchNorm running statistics. With ``freeze=True`` the
    copied blocks get ``requires_grad=False`` and their BatchNorm layers stay in eval mode
    (Yosinski et al.'s frozen "AnB" networks); with ``freeze=False`` they are trained too
    ("AnB+"). ``seed`` fixes the random initialisation of everything that is not copied.
    """
    n_backbone = len(BLOCKS) - 1
    if not isinstance(k, int) or not 0 <= k <= n_backbone:
        raise ValueError(f"k must be an int from 0 (scratch) to {n_backbone} (whole backbone), got {k!r}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = ResNet(num_classes=num_classes, widths=pretrained.widths,
                     in_channels=pretrained.conv1.in_channels)
    for block in BLOCKS[:k]:
        for src, dst in zip(fz.block_modules(pretrained, block), fz.block_modules(net, block)):
            dst.load_state_dict(src.state_dict())
    if freeze and k:
        fz.freeze(net, BLOCKS[:k])
        fz.freeze_bn(net, BLOCKS[:k])
    return net.to(pretrained.conv1.weight.device)


def transfer_groups(model: nn.Module, k: int, lr: float, transferred_lr_factor: float = 0.1) -> list[dict]:
    """Parameter groups: the first ``k`` blocks (the copied ones) at ``lr * transferred_lr_factor``,
    everything above them (new blocks and the head) at ``lr``. Frozen parameters are left out."""
    if not 0 <= k < len(BLOCKS):
        raise ValueError(f"k must be in [0, {len(BLOCKS) - 1}], got {k}")
    if transferred_lr_factor <= 0:
        raise ValueError(f"transferred_lr_factor must be positive, got {transferred_lr_factor}")
    copied = [p for b in BLOCKS[:k] for p in block_parameters(model, b) if p.requires_grad]
    new = [p for b in BLOCKS[k:] for p in block_parameters(model, b) if p.requires_grad]
    groups = [{"params": new, "lr": lr, "name": "new"}]
    if copied:
        groups.append({"params": copied, "lr": lr * transferred_lr_factor, "name": "transferred"})
    return groups


def transfer_run(pretrained: ResNet, k: int, data: TaskData, *, fine_tune: bool, seed: int,
                 epochs: int, lr: float, transferred_lr_factor: float = 0.1, batch_size: int = 32,
                 weight_decay: float = 5e-4, curve: bool = False, device=None,
                 progress: bool = False) -> tuple[ResNet, float, History]:
    """Copy the first ``k`` blocks of ``pretrained`` into a fresh network and train it on ``data``.

    Frozen (``fine_tune=False``): only the new blocks and the head learn, at ``lr``.
    Fine-tuned: the copied blocks learn too, at ``lr * transferred_lr_factor`` (a smaller
    step keeps them near their pretrained values). SGD with warmup and a cosine schedule.
    ``seed`` sets both the initialisation of the new blocks and the shuffling.
    Returns the trained network, its validation accuracy and its per-epoch history; with
    ``curve`` the history holds the validation accuracy after every epoch (a learning curve).
    """
    net = transfer_blocks(pretrained, k, data.num_classes, freeze=not fine_tune, seed=seed)
    groups = transfer_groups(net, k, lr, transferred_lr_factor)
    hist = fit(net, data.train, data.val if curve else None, epochs=epochs, param_groups=groups, schedule="cosine", warmup_steps=5,
        weight_decay=weight_decay, batch_size=batch_size, device=device, seed=seed, progress=progress,
        desc=f"k={k} {'fine-tuned' if fine_tune else 'frozen'}")
    return net, evaluate(net, data.val, device=device)["acc"], hist


def curve_stats(curve: Mapping[int, Sequence[float]]) -> tuple[dict[int, float], dict[int, float]]:
    """Mean and standard deviation over seeds of ``{k: [accuracy per seed]}`` (std 0 for one seed)."""
    means = {k: statistics.fmean(v) for k, v in curve.items()}
    stds = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in curve.items()}
    return means, stds
