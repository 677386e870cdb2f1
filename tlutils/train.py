"""Training core: ``fit()`` and ``evaluate()`` with the knobs transfer learning needs.

``fit`` takes plain parameter groups (so each block can have its own learning
rate), a learning-rate schedule (constant, warmup + cosine, or 1cycle), optional
gradient clipping and a penalty toward the pretrained weights, and returns a
per-epoch :class:`History`. Monitors plug in as :class:`Callback` objects.
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

SCHEDULES = ("constant", "cosine", "onecycle")


# --------------------------------------------------------------------------- set-up helpers

def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU (or ``prefer`` if given)."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_loader(data: Dataset | DataLoader, batch_size: int = 64, shuffle: bool = True,
                seed: int = 0, sampler: Any = None) -> DataLoader:
    """A DataLoader with a seeded shuffle (a DataLoader passed in is returned as is)."""
    if isinstance(data, DataLoader):
        return data
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    g = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, generator=g)


def _check_lr(lr: float, what: str = "lr") -> None:
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {lr!r}")


# --------------------------------------------------------------------------- schedules

def lr_factor(schedule: str, step: int, total_steps: int, warmup_steps: int = 0,
              pct_start: float = 0.3) -> float:
    """Multiplier of each group's base LR at ``step`` (0-based) of ``total_steps``.

    ``constant``: 1 after an optional linear warmup. ``cosine``: linear warmup,
    then cosine decay to 0. ``onecycle``: Smith's 1cycle, cosine from base/25 up to
    base over ``pct_start`` of the run, then down to base/1e4.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    total_steps = max(total_steps, 1)
    if schedule == "onecycle":
        up = max(int(pct_start * total_steps), 1)
        if step < up:
            t = step / up
            return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * t)) / 2
        t = (step - up) / max(total_steps - up, 1)
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * min(t, 1.0))) / 2
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    t = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


# --------------------------------------------------------------------------- history and callbacks

class History(list):
    """Per-epoch records (dicts) of a ``fit`` run; ``h["val_acc"]`` gives one column."""

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return [row.get(key) for row in self]
        return super().__getitem__(key)

    def to_frame(self):
        """The history as a pandas DataFrame, one row per epoch."""
        import pandas as pd
        return pd.DataFrame(list(self))

    def best(self, key: str = "val_acc") -> float:
        """The largest value of ``key`` over epochs."""
        return max(v for v in self[key] if v is not None)


@dataclass
class FitState:
    """What callbacks see: the model, optimizer and progress counters."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    total_steps: int
    step: int = 0
    epoch: int = 0
    history: History = field(default_factory=History)
    stop: bool = False
    loss: float = float("nan")


class Callback:
    """Hooks called by :func:`fit`. Override the ones you need."""

    def on_fit_start(self, state: FitState) -> None: ...
    def on_after_backward(self, state: FitState) -> None:
        """Gradients are computed (and unscaled), before clipping and the optimizer step."""
    def on_step_end(self, state: FitState) -> None: ...
    def on_epoch_end(self, state: FitState, logs: dict) -> None:
        """``logs`` is this epoch's history row; a callback may add keys to it."""
    def on_fit_end(self, state: FitState) -> None: ...


# --------------------------------------------------------------------------- evaluate and fit

@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset | DataLoader, batch_size: int = 512,
             device: torch.device | str | None = None, head: nn.Module | None = None) -> dict:
    """Loss and accuracy of ``model`` on ``data`` in eval mode.

    With ``head``, the logits are ``head(model.forward_features(x))``: how the source
    task is scored with its original classifier on a fine-tuned backbone. The
    model's train/eval mode is restored afterwards.
    """
    device = get_device(device) if not isinstance(device, torch.device) else device
    loader = make_loader(data, batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    model.to(device)
    if head is not None:
        head.to(device).eval()
    total, correct, loss_sum = 0, 0, 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = head(model.forward_features(x)) if head is not None else model(x)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    model.train(was_training)
    return {"loss": loss_sum / max(total, 1), "acc": correct / max(total, 1)}


def fit(model: nn.Module, train_data: Dataset | DataLoader,
        val_data: Dataset | DataLoader | None = None, *,
        epochs: int = 5, lr: float | None = None,
        param_groups: Sequence[dict] | None = None,
        optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
        schedule: str = "constant", warmup_steps: int = 0,
        clip_grad_norm: float | None = None,
        penalty: Callable[[nn.Module], Tensor] | None = None,
        batch_size: int = 64, sampler: Any = None,
        callbacks: Iterable[Callback] = (),
        restore_best: bool = False, patience: int | None = None,
        device: torch.device | str | None = None, amp: bool | None = None,
        seed: int = 0, progress: bool = True, desc: str = "fit") -> History:
    """Train ``model`` and return its per-epoch :class:`History`.

    Args:
        lr: one learning rate for every parameter with ``requires_grad``;
            or give ``param_groups`` (dicts with ``params`` and ``lr``) for
            discriminative learning rates. Only trainable parameters are optimised.
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"`` (AdamW).
        schedule: ``"constant"``, ``"cosine"`` or ``"onecycle"`` (see :func:`lr_factor`),
            stepped every batch; ``warmup_steps`` applies to constant and cosine.
        clip_grad_norm: clip the global gradient norm to this value.
        penalty: a function of the model added to the loss (e.g. :class:`L2SP`).
        restore_best: reload the weights of the epoch with the best ``val_acc``.
        patience: stop after this many epochs without a better ``val_acc``.
        amp: mixed precision; defaults to on for CUDA, off elsewhere.
        seed: seeds the shuffling order, so equal seeds give equal runs.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if (lr is None) == (param_groups is None):
        raise ValueError("give exactly one of lr or param_groups")
    if param_groups is None:
        _check_lr(lr)  # type: ignore[arg-type]
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    groups = []
    for i, g in enumerate(param_groups):
        if "lr" not in g:
            raise ValueError(f"param group {i} has no 'lr'")
        _check_lr(g["lr"], f"lr of param group {i}")
        params = [p for p in g["params"] if p.requires_grad]
        if params:
            groups.append({**g, "params": params})
    if not groups:
        raise ValueError("nothing to train: no parameter has requires_grad=True")
    if clip_grad_norm is not None and clip_grad_norm <= 0:
        raise ValueError(f"clip_grad_norm must be positive, got {clip_grad_norm}")

    device = device if isinstance(device, torch.device) else get_device(device)
    amp = (device.type == "cuda") if amp is None else amp
    model.to(device)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, momentum=momentum, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.AdamW(groups, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose 'sgd' or 'adam'")
    base_lrs = [g["lr"] for g in opt.param_groups]
    loader = make_loader(train_data, batch_size, shuffle=True, seed=seed, sampler=sampler)
    total_steps = epochs * len(loader)
    lr_factor(schedule, 0, total_steps)  # validates the schedule name early
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")
    callbacks = list(callbacks)
    state = FitState(model, opt, device, total_steps)
    best_acc, best_state, since_best = -1.0, None, 0

    for cb in callbacks:
        cb.on_fit_start(state)
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        state.epoch = epoch
        model.train()
        t0 = time.perf_counter()
        seen, correct, loss_sum = 0, 0, 0.0
        for x, y in loader:
            factor = lr_factor(schedule, state.step, total_steps, warmup_steps)
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * factor
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=amp):
                logits = model(x)
                loss = nn.functional.cross_entropy(logits, y)
                total = loss + penalty(model) if penalty is not None else loss
            opt.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.unscale_(opt)
            for cb in callbacks:
                cb.on_after_backward(state)
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            scaler.step(opt)
            scaler.update()
            state.loss = loss.item()
            loss_sum += state.loss * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            for cb in callbacks:
                cb.on_step_end(state)
            state.step += 1
        row: dict = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                     "train_acc": correct / max(seen, 1), "lr": opt.param_groups[0]["lr"],
                     "time": time.perf_counter() - t0}
        if val_data is not None:
            ev = evaluate(model, val_data, device=device)
            row["val_loss"], row["val_acc"] = ev["loss"], ev["acc"]
        for cb in callbacks:
            cb.on_epoch_end(state, row)
        state.history.append(row)
        bar.set_postfix({k: round(v, 3) for k, v in row.items() if k in ("train_loss", "val_acc")})
        if val_data is not None:
            if row["val_acc"] > best_acc:
                best_acc, since_best = row["val_acc"], 0
                if restore_best:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
            if patience is not None and since_best >= patience:
                state.stop = True
        if state.stop:
            break
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    for cb in callbacks:
        cb.on_fit_end(state)
    return state.history


class L2SP:
    """L2-SP penalty (Li et al. 2018): pull the backbone toward its pretrained weights.

    ``alpha/2 * ||w - w0||^2`` over the parameters present in ``reference``, plus
    ``beta/2 * ||w||^2`` over the rest (the new head). Pass as ``fit(..., penalty=L2SP(...))``.
    """

    def __init__(self, model: nn.Module, alpha: float = 0.01, beta: float = 0.0,
                 exclude: Sequence[str] = ("fc.",)) -> None:
        self.alpha, self.beta = alpha, beta
        self.reference = {n: p.detach().clone() for n, p in model.named_parameters()
                          if not any(n.startswith(e) for e in exclude)}

    def __call__(self, model: nn.Module) -> Tensor:
        sp, other = 0.0, 0.0
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if n in self.reference:
                sp = sp + (p - self.reference[n].to(p.device)).pow(2).sum()
            else:
                other = other + p.pow(2).sum()
        return 0.5 * self.alpha * sp + 0.5 * self.beta * other
