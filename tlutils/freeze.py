"""Freezing, BatchNorm and learning-rate-group helpers (fastai's ``freeze``/``unfreeze`` vocabulary).

Blocks are named as in :data:`tlutils.models.BLOCKS`: ``conv1`` (the stem:
``conv1`` + ``bn1``), ``layer1``..``layer4`` and ``fc``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from torch import nn

from .models import BLOCKS


def block_modules(model: nn.Module, block: str) -> list[nn.Module]:
    """The modules that make up ``block`` (the stem is ``conv1`` and ``bn1``)."""
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; choose from {', '.join(BLOCKS)}")
    if block == "conv1":
        return [model.conv1, model.bn1]
    return [getattr(model, block)]


def block_parameters(model: nn.Module, block: str) -> list[nn.Parameter]:
    """All parameters of ``block``."""
    return [p for m in block_modules(model, block) for p in m.parameters()]


def _blocks(blocks: str | Iterable[str]) -> list[str]:
    return [blocks] if isinstance(blocks, str) else list(blocks)


def freeze(model: nn.Module, blocks: str | Iterable[str] = BLOCKS[:-1]) -> nn.Module:
    """Set ``requires_grad=False`` on ``blocks`` (default: the whole backbone, not ``fc``).

    This stops gradient updates only. BatchNorm running statistics still change
    in ``train()`` mode: use :func:`freeze_bn` for those.
    """
    for b in _blocks(blocks):
        for p in block_parameters(model, b):
            p.requires_grad_(False)
    return model


def unfreeze(model: nn.Module, blocks: str | Iterable[str] = BLOCKS) -> nn.Module:
    """Set ``requires_grad=True`` on ``blocks`` (default: everything)."""
    for b in _blocks(blocks):
        for p in block_parameters(model, b):
            p.requires_grad_(True)
    return model


def freeze_to(model: nn.Module, n: int) -> nn.Module:
    """Freeze the first ``n`` blocks of :data:`BLOCKS` and unfreeze the rest (fastai's ``freeze_to``)."""
    if not 0 <= n <= len(BLOCKS):
        raise ValueError(f"n must be in [0, {len(BLOCKS)}], got {n}")
    unfreeze(model, BLOCKS[n:])
    return freeze(model, BLOCKS[:n])


def trainable_blocks(model: nn.Module) -> list[str]:
    """Blocks with at least one trainable parameter."""
    return [b for b in BLOCKS if any(p.requires_grad for p in block_parameters(model, b))]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def discriminative_groups(model: nn.Module, head_lr: float, factor: float = 10.0,
                          blocks: Sequence[str] | None = None,
                          decay: float | None = None) -> list[dict]:
    """Optimizer parameter groups with smaller learning rates for lower blocks.

    The head gets ``head_lr``; the next block down gets ``head_lr / factor``. With
    ``decay`` (e.g. 2.6, as in ULMFiT) each further block down is divided by
    ``decay`` again; without it all backbone blocks share ``head_lr / factor``.
    Only ``blocks`` (default: the trainable ones) get a group.
    """
    if head_lr <= 0 or factor <= 0 or (decay is not None and decay <= 0):
        raise ValueError("head_lr, factor and decay must be positive")
    blocks = trainable_blocks(model) if blocks is None else list(blocks)
    groups = []
    for depth, b in enumerate(reversed(BLOCKS)):
        if b not in blocks:
            continue
        if b == "fc":
            lr = head_lr
        else:
            lr = head_lr / factor / (decay ** (depth - 1) if decay else 1.0)
        groups.append({"params": block_parameters(model, b), "lr": lr, "name": b})
    return groups


def gradual_unfreezing(model: nn.Module, epoch: int, start: int = 0,
                       order: Sequence[str] = tuple(reversed(BLOCKS)), bottom: str = "layer3") -> list[str]:
    """ULMFiT's gradual unfreezing: at epoch ``start + i`` the top ``i + 1`` blocks are trainable.

    Unfreezing stops at ``bottom`` (inclusive), so shallow generic blocks stay
    frozen. Returns the trainable blocks after the change.
    """
    if bottom not in order:
        raise ValueError(f"unknown block {bottom!r}")
    depth = min(max(epoch - start, 0) + 1, list(order).index(bottom) + 1)
    freeze(model, BLOCKS)
    unfreeze(model, list(order)[:depth])
    return trainable_blocks(model)


# --------------------------------------------------------------------------- BatchNorm

class EvalBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that stays in eval mode: ``train()`` cannot switch it back.

    It normalises with its stored running statistics and never updates them.
    Created by :func:`freeze_bn`; :func:`unfreeze_bn` turns it back.
    """

    def train(self, mode: bool = True) -> "EvalBatchNorm2d":
        return super().train(False)


def bn_layers(model: nn.Module, blocks: str | Iterable[str] = BLOCKS) -> list[tuple[str, nn.BatchNorm2d]]:
    """``(name, module)`` of every BatchNorm2d inside ``blocks``."""
    out = []
    names = {id(m): n for n, m in model.named_modules()}
    for b in _blocks(blocks):
        for top in block_modules(model, b):
            for m in top.modules():
                if isinstance(m, nn.BatchNorm2d):
                    out.append((names[id(m)], m))
    return out


def freeze_bn(model: nn.Module, blocks: str | Iterable[str] = BLOCKS,
              affine: bool = False) -> nn.Module:
    """Keep the BatchNorm layers of ``blocks`` in eval mode, surviving ``model.train()``.

    Their running mean/var stop changing and they normalise with the pretrained
    statistics. With ``affine=True`` their gamma/beta are also frozen.
    """
    for _, m in bn_layers(model, blocks):
        m.__class__ = EvalBatchNorm2d
        m.train(False)
        if affine:
            for p in m.parameters():
                p.requires_grad_(False)
    return model


def unfreeze_bn(model: nn.Module, blocks: str | Iterable[str] = BLOCKS) -> nn.Module:
    """Undo :func:`freeze_bn`: the layers follow ``model.train()``/``eval()`` again."""
    for _, m in bn_layers(model, blocks):
        if isinstance(m, EvalBatchNorm2d):
            m.__class__ = nn.BatchNorm2d
            m.train(model.training)
    return model


# --------------------------------------------------------------------------- transfer strategies

STRATEGIES = {
    "feature extraction": ("fc",),
    "fine-tune top": ("layer4", "fc"),
    "full fine-tune": BLOCKS,
}
"""The course's names for the ways to reuse a pretrained backbone, and the blocks each one trains.

Every lab and :mod:`tlutils.strategies` use these names; the baseline that trains the same
architecture from random weights is :data:`SCRATCH`.
"""

SCRATCH = "scratch"
"""The name of the from-scratch baseline (every block trains, from random weights)."""


def apply_strategy(model: nn.Module, strategy: str, freeze_bn_stats: bool | None = None) -> nn.Module:
    """Make exactly the blocks of ``strategy`` trainable (see :data:`STRATEGIES`); returns the model.

    Frozen blocks also get their BatchNorm layers kept in eval mode (:func:`freeze_bn`):
    a frozen block should not drift. The trained blocks' BatchNorm layers follow
    ``model.train()`` unless ``freeze_bn_stats=True`` (default: only for feature extraction).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(map(repr, STRATEGIES))}")
    trained = list(STRATEGIES[strategy])
    frozen = [b for b in BLOCKS if b not in trained]
    unfreeze(model, trained)
    unfreeze_bn(model, trained)
    freeze(model, frozen)
    freeze_bn(model, [b for b in frozen if b != "fc"])
    if freeze_bn_stats or (freeze_bn_stats is None and strategy == "feature extraction"):
        freeze_bn(model, [b for b in trained if b != "fc"])
    return model
