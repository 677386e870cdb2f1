"""Monitors: what happens inside the backbone while it is fine-tuned.

Functions measure one snapshot; the :class:`~tlutils.train.Callback` classes
record them during :func:`tlutils.train.fit`.
"""
from __future__ import annotations

import copy
import math
from typing import Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .freeze import block_parameters, bn_layers
from .models import BLOCKS
from .train import Callback, FitState, evaluate, map_batches

BACKBONE = BLOCKS[:-1]


def grad_norms(model: nn.Module, blocks=BLOCKS) -> dict[str, float]:
    """L2 norm of the current gradients of each block (0 for blocks without gradients)."""
    out = {}
    for b in blocks:
        sq = [p.grad.detach().float().pow(2).sum() for p in block_parameters(model, b) if p.grad is not None]
        out[b] = float(torch.stack(sq).sum().sqrt()) if sq else 0.0
    return out


def backbone_grad_norm(norms: Mapping[str, float]) -> float:
    """Combined L2 gradient norm of the backbone blocks in a :func:`grad_norms` dict."""
    return float(sum(norms[b] ** 2 for b in BACKBONE if b in norms) ** 0.5)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's state_dict, the reference for drift measures."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def weight_drift(model: nn.Module, reference: Mapping[str, torch.Tensor],
                 blocks=BACKBONE) -> dict[str, float]:
    """Relative distance ``||w - w0|| / ||w0||`` of each block's weights from ``reference``."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for b in blocks:
        num, den = 0.0, 0.0
        for p in block_parameters(model, b):
            w0 = reference[names[id(p)]].to(p.device)
            num += float((p.detach() - w0).pow(2).sum())
            den += float(w0.pow(2).sum())
        out[b] = (num / den) ** 0.5 if den > 0 else 0.0
    return out


def bn_stat_drift(model: nn.Module, reference: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per BN layer: mean absolute change of ``running_mean`` plus that of ``running_var``."""
    out = {}
    for name, m in bn_layers(model):
        rm0 = reference[f"{name}.running_mean"].to(m.running_mean.device)
        rv0 = reference[f"{name}.running_var"].to(m.running_var.device)
        out[name] = float((m.running_mean - rm0).abs().mean() + (m.running_var - rv0).abs().mean())
    return out


def source_accuracy(model: nn.Module, source_head: nn.Module, data: Dataset | DataLoader,
                    device=None) -> float:
    """Source-task accuracy of the (fine-tuned) backbone read through its original head.

    This is how forgetting is measured: target accuracy cannot show it.
    """
    return evaluate(model, data, head=source_head, device=device)["acc"]


class GradNormMonitor(Callback):
    """Records per-block gradient norms at every step (before clipping).

    ``self.steps`` is a list of dicts: ``{"step", "epoch", <block>: norm, "backbone": norm}``,
    finite only. A step whose gradients hold inf or NaN (with float16 mixed precision the
    GradScaler skips that update) is not recorded there; its number goes to ``self.nonfinite``.
    """

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.nonfinite: list[int] = []

    def on_after_backward(self, state: FitState) -> None:
        norms = grad_norms(state.model)
        norms["backbone"] = backbone_grad_norm(norms)
        if not all(math.isfinite(v) for v in norms.values()):
            self.nonfinite.append(state.step)
            return
        self.steps.append({"step": state.step, "epoch": state.epoch, **norms})

    def series(self, key: str = "backbone") -> list[float]:
        return [s[key] for s in self.steps]


class DriftMonitor(Callback):
    """Records weight drift per block (and BN running-stat drift) from the start of ``fit``.

    Pass ``reference`` (a :func:`snapshot`) to measure from the pretrained weights
    across several ``fit`` calls. Records every ``every`` steps.
    """

    def __init__(self, reference: Mapping[str, torch.Tensor] | None = None, every: int = 1,
                 bn: bool = False) -> None:
        self.reference, self.every, self.bn = reference, every, bn
        self.steps: list[dict] = []

    def on_fit_start(self, state: FitState) -> None:
        if self.reference is None:
            self.reference = snapshot(state.model)

    def on_step_end(self, state: FitState) -> None:
        if state.step % self.every:
            return
        row = {"step": state.step, "epoch": state.epoch, **weight_drift(state.model, self.reference)}
        if self.bn:
            row.update({f"bn:{k}": v for k, v in bn_stat_drift(state.model, self.reference).items()})
        self.steps.append(row)


class SourceAccuracyMonitor(Callback):
    """Adds ``source_acc`` (original head on the current backbone) to each epoch's history row."""

    def __init__(self, source_head: nn.Module, data: Dataset | DataLoader) -> None:
        self.head = copy.deepcopy(source_head)
        self.data = data

    def on_epoch_end(self, state: FitState, logs: dict) -> None:
        logs["source_acc"] = source_accuracy(state.model, self.head, self.data, device=state.device)


class StepAccuracyMonitor(Callback):
    """Accuracy on a fixed (small) dataset before the first step and after every ``every`` steps.

    ``self.steps`` is a list of ``{"step": k, "acc": a}``, ``k`` the number of updates made so far,
    so it lines up with :class:`GradNormMonitor`, whose step ``k`` is the gradient computed after
    ``k`` updates. ``self.losses`` holds ``{"step": k, "loss": l}``, the training loss of the batch of
    update ``k`` (before it). Use a few hundred images: it runs inside the training loop.
    """

    def __init__(self, data: Dataset | DataLoader, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.data, self.every = data, every
        self.steps: list[dict] = []
        self.losses: list[dict] = []

    def _record(self, state: FitState, step: int) -> None:
        self.steps.append({"step": step, "acc": evaluate(state.model, self.data, device=state.device)["acc"]})

    def on_fit_start(self, state: FitState) -> None:
        self._record(state, state.step)

    def on_step_end(self, state: FitState) -> None:
        self.losses.append({"step": state.step, "loss": state.loss})
        if (state.step + 1) % self.every == 0:
            self._record(state, state.step + 1)


class EpochAccuracyMonitor(Callback):
    """Accuracy on ``data`` after every ``every``-th epoch: a learning curve for a long run at a fraction
    of the cost of evaluating after every epoch. ``self.epochs`` is a list of ``{"epoch": e, "acc": a}``."""

    def __init__(self, data: Dataset | DataLoader, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.data, self.every = data, every
        self.epochs: list[dict] = []

    def on_epoch_end(self, state: FitState, logs: dict) -> None:
        if logs["epoch"] % self.every == 0:
            self.epochs.append({"epoch": logs["epoch"], "acc": evaluate(state.model, self.data, device=state.device)["acc"]})


# --------------------------------------------------------------------------- debugging and production monitoring

@torch.no_grad()
def prediction_entropy(model: nn.Module, data: Dataset | DataLoader, normalized: bool = True,
                       batch_size: int | None = None, device=None) -> torch.Tensor:
    """Entropy of the predicted class distribution of each example (a CPU tensor).

    With ``normalized`` it is divided by ``log(num_classes)``: 0 is a one-hot
    prediction, 1 a uniform one. Needs no labels, so it can be watched in
    production: a rising mean entropy says the inputs look less like the training data.
    """
    def entropy(x: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(model(x).float(), dim=1)
        h = -(logp.exp() * logp).sum(1)
        return (h / torch.log(torch.tensor(float(logp.shape[1]))) if normalized else h).cpu()

    return torch.cat(map_batches(model, data, entropy, batch_size, device)[0])


def feature_mmd(model: nn.Module, reference: Dataset | DataLoader, current: Dataset | DataLoader,
                upto: str = "layer4", max_samples: int = 300, n_permutations: int = 100,
                seed: int = 0, device=None) -> tuple[float, float]:
    """MMD^2_u between the backbone features of ``reference`` and ``current`` data, and its p-value.

    The production drift check: keep a reference set (e.g. the validation images) and
    compare each new batch of inputs with it in feature space (RBF kernel, median
    bandwidth, permutation test; see :func:`tlutils.shift.mmd2_unbiased`). Labels
    are not used. At most ``max_samples`` examples per side (the first ones) keep it fast.
    """
    from .shift import extract_features, mmd_permutation_test

    if max_samples < 2:
        raise ValueError(f"max_samples must be >= 2, got {max_samples}")
    fx, _ = extract_features(model, reference, upto=upto, device=device)
    fy, _ = extract_features(model, current, upto=upto, device=device)
    return mmd_permutation_test(fx[:max_samples], fy[:max_samples], n_permutations, seed)


def nonfinite(model: nn.Module) -> list[str]:
    """Names of parameters, gradients and buffers holding NaN or Inf (empty: all finite).

    Run it when the loss turns NaN (typically right after unfreezing with too high a
    learning rate): gradients (``<name>.grad``) usually go first, then the weights.
    """
    bad = []
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            bad.append(name)
        if p.grad is not None and not torch.isfinite(p.grad).all():
            bad.append(f"{name}.grad")
    for name, b in model.named_buffers():
        if b.is_floating_point() and not torch.isfinite(b).all():
            bad.append(name)
    return bad
