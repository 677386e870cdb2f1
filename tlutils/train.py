"""Training core: ``fit()`` and ``evaluate()`` with the knobs transfer learning needs.

``fit`` takes plain parameter groups (so each block can have its own learning
rate), a learning-rate schedule (constant, warmup + cosine, or 1cycle, optionally with
1cycle's momentum cycle), optional
gradient clipping and a penalty toward the pretrained weights, and returns a
per-epoch :class:`History`. Monitors plug in as :class:`Callback` objects.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
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

def get_device(prefer: torch.device | str | None = None) -> torch.device:
    """The device to use: ``prefer`` (a name or a device) if given, else CUDA if there is one, else the CPU.

    Apple's MPS is used only when asked for (``"mps"``), never picked by itself: nothing in this
    course is tested on it, it has no float64 and falls back to the CPU for some operations, and
    the offline world's 32-pixel images train about as fast on a laptop CPU anyway.
    """
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model with neither."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def evaluating(model: nn.Module, device: torch.device | str | None = None):
    """Run a block with ``model`` in eval mode on ``device`` (default: where the model is).

    Afterwards the model is back in its train/eval mode and on its own device: a helper that
    only *reads* a model must not move the caller's model. Yields the device used.
    """
    home = model_device(model)
    device = home if device is None else torch.device(device)
    was_training = model.training
    model.eval().to(device)
    try:
        yield device
    finally:
        model.to(home).train(was_training)


def inference_input(x: Tensor, device: torch.device | str) -> Tensor:
    """An input batch for an eval-mode forward pass on ``device``.

    Image batches go channels-last: on this course's 2-core CPU, :func:`evaluate` of the bundled
    ResNet on 500 images took about a quarter less time that way (the logits agree with the
    default layout to about 1e-5; no accuracy of the forgetting lab's ci run changed). Training
    keeps the default layout.
    """
    return x.to(device, memory_format=torch.channels_last) if x.dim() == 4 else x.to(device)


def inference_batch_size(device: torch.device | str) -> int:
    """Images per forward pass where nothing is trained (:func:`evaluate`, :func:`map_batches`).

    512 on a GPU, which wants large batches; 64 on a CPU, where a batch's activations then stay in
    the caches: on this course's 2-core CPU, evaluating the bundled ResNet on 1,000 images took about
    a quarter less time than with 512, with the same logits bit for bit (in eval mode every image
    passes through BatchNorm alone, so the batch size cannot change a prediction).
    """
    return 64 if torch.device(device).type == "cpu" else 512


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices).

    Same seed, same numbers holds on the CPU. On a GPU, runs with one seed still differ a
    little: cuDNN picks its algorithms at run time, some backward kernels (e.g. of adaptive
    average pooling) add in a varying order, and mixed precision rounds differently.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_loader(data: Dataset | DataLoader, batch_size: int = 64, shuffle: bool = True,
                seed: int = 0, sampler: Any = None, pin_memory: bool = False) -> DataLoader:
    """A DataLoader with a seeded shuffle (a DataLoader passed in is returned as is).

    ``pin_memory`` puts each batch in page-locked memory, so that copying it to a CUDA GPU is
    a fast transfer that can run while the CPU goes on (``x.to(device, non_blocking=True)``).
    """
    if isinstance(data, DataLoader):
        return data
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    g = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, generator=g, pin_memory=pin_memory)


def amp_dtype(device: torch.device | str) -> torch.dtype:
    """The autocast dtype ``fit(..., amp=True)`` uses on ``device``.

    bfloat16 where the hardware has it (the CPU, NVIDIA GPUs from Ampere on): its range is
    float32's, so gradients cannot overflow and no loss scaling is needed. float16 elsewhere
    (older GPUs such as Colab's T4, Apple MPS), with a GradScaler on CUDA.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.bfloat16
    return torch.float16


def _check_lr(lr: float, what: str = "lr") -> None:
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {lr!r}")


# --------------------------------------------------------------------------- schedules

def lr_factor(schedule: str, step: int, total_steps: int, warmup_steps: int = 0,
              pct_start: float = 0.3) -> float:
    """Multiplier of each group's base LR at ``step`` (0-based) of ``total_steps``.

    ``constant``: 1 after an optional linear warmup. ``cosine``: linear warmup,
    then cosine decay to 0. ``onecycle``: the learning-rate half of Smith's (2018) 1cycle,
    cosine from base/25 up to base over ``pct_start`` of the run, then down to base/1e4
    (the cosine shape and these two divisors follow fastai and ``torch.optim.lr_scheduler.OneCycleLR``;
    Smith's paper ramps linearly). Its momentum half is :func:`onecycle_momentum`.
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


def onecycle_momentum(step: int, total_steps: int, high: float = 0.95, low: float = 0.85,
                      pct_start: float = 0.3) -> float:
    """Momentum at ``step`` of 1cycle (Smith 2018): it moves opposite to the learning rate.

    From ``high`` down to ``low`` while :func:`lr_factor`'s ``onecycle`` warms up (the first
    ``pct_start`` of the run), then back up to ``high`` while the learning rate anneals, with
    the same cosine shape. Smith's values are 0.95 and 0.85.
    """
    if not 0 <= low <= high < 1:
        raise ValueError(f"need 0 <= low <= high < 1, got low={low}, high={high}")
    total_steps = max(total_steps, 1)
    up = max(int(pct_start * total_steps), 1)
    if step < up:
        t = step / up
    else:
        t = 1 - min((step - up) / max(total_steps - up, 1), 1.0)
    return high - (high - low) * (1 - math.cos(math.pi * t)) / 2


# --------------------------------------------------------------------------- history and callbacks

def late_change(curve: Sequence[float], fraction: float = 0.25) -> tuple[int, float]:
    """How far a learning curve still moved at its end: ``(k, curve[-1] - curve[-1 - k])`` over its last
    ``k = fraction * (len(curve))`` epochs (at least one). Near zero, the budget was enough for the run to settle."""
    if len(curve) < 2 or not 0 < fraction < 1:
        raise ValueError(f"late_change needs a curve of at least 2 points and 0 < fraction < 1, got {len(curve)}, {fraction}")
    k = max(1, int(len(curve) * fraction))
    k = min(k, len(curve) - 1)
    return k, float(curve[-1] - curve[-1 - k])


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
def evaluate(model: nn.Module, data: Dataset | DataLoader, batch_size: int | None = None,
             device: torch.device | str | None = None, head: nn.Module | None = None) -> dict:
    """Loss and accuracy of ``model`` on ``data`` in eval mode.

    With ``head``, the logits are ``head(model.forward_features(x))``: how the source
    task is scored with its original classifier on a fine-tuned backbone. Runs on
    ``device`` (default: the model's own); the model's train/eval mode and device are
    restored afterwards. ``batch_size`` defaults to :func:`inference_batch_size`.
    """
    total, correct, loss_sum = 0, 0, 0.0
    with contextlib.ExitStack() as stack:
        device = stack.enter_context(evaluating(model, device))
        if head is not None:
            stack.enter_context(evaluating(head, device))
        for x, y in make_loader(data, batch_size or inference_batch_size(device), shuffle=False):
            x, y = inference_input(x, device), y.to(device)
            logits = head(model.forward_features(x)) if head is not None else model(x)
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += len(y)
    return {"loss": loss_sum / max(total, 1), "acc": correct / max(total, 1)}


def fit(model: nn.Module, train_data: Dataset | DataLoader,
        val_data: Dataset | DataLoader | None = None, *,
        epochs: int = 5, lr: float | None = None,
        param_groups: Sequence[dict] | None = None,
        optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
        schedule: str = "constant", warmup_steps: int = 0,
        cycle_momentum: tuple[float, float] | None = None,
        clip_grad_norm: float | None = None,
        penalty: Callable[[nn.Module], Tensor] | None = None,
        batch_size: int = 64, sampler: Any = None,
        callbacks: Iterable[Callback] = (),
        restore_best: bool = False, patience: int | None = None,
        device: torch.device | str | None = None, amp: bool | torch.dtype | None = None,
        stop_on_nonfinite: bool = True,
        seed: int = 0, progress: bool = True, desc: str = "fit") -> History:
    """Train ``model`` and return its per-epoch :class:`History`.

    Args:
        lr: one learning rate for every parameter with ``requires_grad``;
            or give ``param_groups`` (dicts with ``params`` and ``lr``) for
            discriminative learning rates. Only trainable parameters are optimised.
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"`` (AdamW).
        schedule: ``"constant"``, ``"cosine"`` or ``"onecycle"`` (see :func:`lr_factor`),
            stepped every batch; ``warmup_steps`` applies to constant and cosine.
        cycle_momentum: ``(high, low)``, e.g. Smith's ``(0.95, 0.85)``, with ``schedule="onecycle"``:
            the momentum (AdamW's beta1) follows :func:`onecycle_momentum` instead of staying at
            ``momentum``. Default ``None``: constant momentum.
        clip_grad_norm: clip the global gradient norm to this value.
        penalty: a function of the model added to the loss (e.g. :class:`L2SP`).
        restore_best: reload the weights of the epoch with the best ``val_acc``.
        patience: stop after this many epochs without a better ``val_acc``.
        device: where to train (default: :func:`get_device`, CUDA if there is one); the model
            is moved there and stays there.
        amp: mixed precision: ``True`` autocasts to :func:`amp_dtype` (bfloat16 where the device
            has it, else float16), a dtype forces that one; defaults to on for CUDA, off elsewhere.
            float16 comes with a GradScaler: steps whose gradients overflow are skipped, and
            counted in each history row's ``skipped_steps``.
        stop_on_nonfinite: raise ``FloatingPointError`` as soon as the training loss is NaN or
            infinite, before the optimizer steps with it (the default); ``False`` trains on.
        seed: seeds the shuffling order, so equal seeds give equal runs (on the CPU: see
            :func:`seed_everything`).
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
    if cycle_momentum is not None:
        if schedule != "onecycle":
            raise ValueError(f"cycle_momentum goes with schedule='onecycle', not {schedule!r}")
        onecycle_momentum(0, 1, *cycle_momentum)  # validates (high, low) early
    if clip_grad_norm is not None and clip_grad_norm <= 0:
        raise ValueError(f"clip_grad_norm must be positive, got {clip_grad_norm}")
    if not (amp is None or isinstance(amp, bool) or amp in (torch.float16, torch.bfloat16)):
        raise ValueError(f"amp must be True, False, None, torch.float16 or torch.bfloat16, got {amp!r}")

    device = get_device(device)
    amp = (device.type == "cuda") if amp is None else amp
    dtype = amp if isinstance(amp, torch.dtype) else amp_dtype(device) if amp else None
    model.to(device)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, momentum=momentum, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.AdamW(groups, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose 'sgd' or 'adam'")
    base_lrs = [g["lr"] for g in opt.param_groups]
    pinned = device.type == "cuda"
    loader = make_loader(train_data, batch_size, shuffle=True, seed=seed, sampler=sampler, pin_memory=pinned)
    total_steps = epochs * len(loader)
    lr_factor(schedule, 0, total_steps)  # validates the schedule name early
    # float16's range is small: scale the loss so gradients do not underflow, skip steps that overflow
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
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
        seen, correct, loss_sum, skipped = 0, 0, 0.0, 0
        for x, y in loader:
            factor = lr_factor(schedule, state.step, total_steps, warmup_steps)
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * factor
            if cycle_momentum is not None:
                beta = onecycle_momentum(state.step, total_steps, *cycle_momentum)
                for g in opt.param_groups:
                    if "betas" in g:
                        g["betas"] = (beta, g["betas"][1])
                    else:
                        g["momentum"] = beta
            # pinned batches copy while the CPU goes on queueing the forward pass
            x, y = x.to(device, non_blocking=pinned), y.to(device, non_blocking=pinned)
            with torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
                logits = model(x)
                loss = nn.functional.cross_entropy(logits.float(), y)
                total = loss + penalty(model) if penalty is not None else loss
            state.loss = loss.item()
            if stop_on_nonfinite and not math.isfinite(state.loss):
                raise FloatingPointError(
                    f"fit stopped: the training loss is {state.loss} at step {state.step} (epoch {epoch + 1}), "
                    "before any update with it. Lower the learning rate or clip the gradients "
                    "(clip_grad_norm=...), or pass stop_on_nonfinite=False to train on.")
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                total.backward()
            else:
                scaler.scale(total).backward()
                scaler.unscale_(opt)   # callbacks and clipping see the true gradients
            for cb in callbacks:
                cb.on_after_backward(state)
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            if scaler is None:
                opt.step()
            else:
                scale = scaler.get_scale()
                scaler.step(opt)       # skipped if a gradient is inf/NaN ...
                scaler.update()        # ... and then the scale is lowered
                skipped += int(scaler.get_scale() < scale)
            loss_sum += state.loss * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            for cb in callbacks:
                cb.on_step_end(state)
            state.step += 1
        row: dict = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                     "train_acc": correct / max(seen, 1), "lr": opt.param_groups[0]["lr"],
                     "skipped_steps": skipped, "time": time.perf_counter() - t0}
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
                ref = self.reference[n]
                if ref.device != p.device:   # moved once, not copied at every step
                    ref = self.reference[n] = ref.to(p.device)
                sp = sp + (p - ref).pow(2).sum()
            else:
                other = other + p.pow(2).sum()
        return 0.5 * self.alpha * sp + 0.5 * self.beta * other


# --------------------------------------------------------------------------- recipes: LR range test, imbalance, checks

LR_FIND_RULES = ("min/10", "steepest")


@dataclass
class LRFinderResult:
    """What :func:`lr_find` measured: one learning rate and loss per step.

    ``losses`` are smoothed (bias-corrected exponential moving average), ``raw_losses``
    are the batch losses as measured. ``suggestion`` is the learning rate the ``rule``
    picks; ``min_lr`` is where the smoothed loss is lowest, ``steepest_lr`` where it
    falls fastest per decade of learning rate.
    """
    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float
    min_lr: float
    steepest_lr: float
    rule: str
    diverged: bool


def _steepest_index(lrs: Sequence[float], losses: Sequence[float], upto: int) -> int:
    """Index of the most negative slope d(loss)/d(log10 lr) among the first ``upto + 1`` points."""
    if upto < 2:
        return 0
    loss = np.asarray(losses[:upto + 1], dtype=float)
    slopes = np.gradient(loss, np.log10(np.asarray(lrs[:upto + 1], dtype=float)))
    return int(np.argmin(slopes))


def lr_find(model: nn.Module, data: Dataset | DataLoader, start_lr: float = 1e-5, end_lr: float = 1.0,
            num_steps: int = 100, *, batch_size: int = 32, optimizer: str = "sgd", momentum: float = 0.9,
            smoothing: float = 0.9, diverge: float = 4.0, rule: str = "min/10",
            device: torch.device | str | None = None, seed: int = 0, progress: bool = True) -> LRFinderResult:
    """A learning-rate range test in fastai's form: train briefly while the LR grows exponentially.

    Smith (2017) introduced the range test as a *linear* increase of the LR over a few epochs,
    reading off where validation *accuracy* starts to rise and where it stops rising. The form
    implemented here is fastai's ``lr_find``: the LR grows exponentially from ``start_lr`` to
    ``end_lr`` over ``num_steps`` mini-batches (the data is cycled if needed), every trainable
    parameter at the same LR; the training loss is smoothed with a bias-corrected exponential
    moving average (``smoothing``); the run stops once the smoothed loss exceeds ``diverge``
    (fastai: 4) times its best value, or is not finite; and the suggestion rules are fastai's.

    The suggested LR is deliberately *below* the loss minimum: at the minimum the loss
    is already about to blow up, so training there is unstable. ``rule``:

    * ``"min/10"`` (default): a tenth of the LR at the smoothed loss minimum;
    * ``"steepest"``: the LR where the smoothed loss falls fastest (per decade), before the minimum.

    The model's weights, BatchNorm statistics and train/eval mode are restored afterwards,
    so the test leaves no trace: train the model for real with the suggested LR next.
    """
    _check_lr(start_lr, "start_lr")
    _check_lr(end_lr, "end_lr")
    if end_lr <= start_lr:
        raise ValueError(f"end_lr ({end_lr}) must be larger than start_lr ({start_lr})")
    if num_steps < 3:
        raise ValueError(f"num_steps must be >= 3, got {num_steps}")
    if rule not in LR_FIND_RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(LR_FIND_RULES)}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter has requires_grad=True")
    device = get_device(device)
    saved_state = copy.deepcopy(model.state_dict())   # weights *and* BN buffers
    was_training = model.training
    model.to(device)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=start_lr, momentum=momentum)
    elif optimizer == "adam":
        opt = torch.optim.AdamW(params, lr=start_lr, weight_decay=0.0)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose 'sgd' or 'adam'")
    loader = make_loader(data, batch_size, shuffle=True, seed=seed)
    gamma = (end_lr / start_lr) ** (1 / (num_steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    raw: list[float] = []
    avg, best, diverged = 0.0, math.inf, False
    batches = iter(loader)
    model.train()
    try:
        for step in tqdm(range(num_steps), desc="lr_find", disable=not progress, leave=False):
            try:
                x, y = next(batches)
            except StopIteration:  # cycle through small datasets
                batches = iter(loader)
                x, y = next(batches)
            lr = start_lr * gamma ** step
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = loss.item()
            if not math.isfinite(value):
                diverged = True
                break
            avg = smoothing * avg + (1 - smoothing) * value
            smoothed = avg / (1 - smoothing ** (step + 1))  # bias correction for the first steps
            lrs.append(lr)
            raw.append(value)
            losses.append(smoothed)
            best = min(best, smoothed)
            if step > 0 and smoothed > diverge * best:
                diverged = True
                break
    finally:
        model.load_state_dict(saved_state)
        model.train(was_training)
    if len(losses) < 3:
        raise RuntimeError("the loss diverged within the first steps: lower start_lr")
    i_min = int(np.argmin(losses))
    i_steep = _steepest_index(lrs, losses, i_min)
    min_lr, steepest_lr = lrs[i_min], lrs[i_steep]
    suggestion = min_lr / 10 if rule == "min/10" else steepest_lr
    return LRFinderResult(lrs, losses, raw, suggestion, min_lr, steepest_lr, rule, diverged)


def _targets_of(data: Dataset) -> Tensor:
    """The labels of a dataset: its ``targets`` attribute, else read item by item."""
    targets = getattr(data, "targets", None)
    if targets is None:
        targets = [int(data[i][1]) for i in range(len(data))]  # type: ignore[arg-type]
    return torch.as_tensor(targets, dtype=torch.long)


def balanced_sampler(data_or_targets: Dataset | Sequence[int] | Tensor, num_samples: int | None = None,
                     seed: int = 0) -> torch.utils.data.WeightedRandomSampler:
    """A sampler that draws every class equally often (with replacement), for imbalanced data.

    Each example is weighted by 1 / (size of its class), so a class with 5 images is
    drawn as often as one with 100. ``num_samples`` defaults to the dataset size (one
    "epoch"). Pass it to ``fit(..., sampler=balanced_sampler(train_data))``.
    """
    targets = data_or_targets if isinstance(data_or_targets, (Tensor, list, tuple, np.ndarray)) \
        else _targets_of(data_or_targets)
    targets = torch.as_tensor(targets, dtype=torch.long)
    if targets.numel() == 0:
        raise ValueError("balanced_sampler needs at least one example")
    counts = torch.bincount(targets)
    weights = 1.0 / counts[targets].double()
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.WeightedRandomSampler(weights, num_samples or len(targets),
                                                  replacement=True, generator=g)


@torch.no_grad()
def map_batches(model: nn.Module, data: Dataset | DataLoader, fn: Callable[[Tensor], Any], batch_size: int | None = None,
                device: torch.device | str | None = None) -> tuple[list, Tensor]:
    """``fn(x)`` for every batch of ``data`` in order, with ``model`` in eval mode on ``device``
    (default: the model's own) and no gradients, and all the labels. The model's train/eval
    mode and device are restored afterwards. ``batch_size`` defaults to :func:`inference_batch_size`."""
    outs, labels = [], []
    with evaluating(model, device) as device:
        for x, y in make_loader(data, batch_size or inference_batch_size(device), shuffle=False):
            outs.append(fn(inference_input(x, device)))
            labels.append(y)
    return outs, torch.cat(labels)


def predict(model: nn.Module, data: Dataset | DataLoader, batch_size: int | None = None,
            device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Predicted classes and true labels over ``data`` (eval mode; the mode is restored)."""
    preds, labels = map_batches(model, data, lambda x: model(x).argmax(1).cpu(), batch_size, device)
    return torch.cat(preds), labels


def confusion_matrix(model: nn.Module, data: Dataset | DataLoader, num_classes: int | None = None,
                     device: torch.device | str | None = None) -> Tensor:
    """``C[i, j]``: how many examples of true class ``i`` the model predicts as ``j``."""
    preds, labels = predict(model, data, device=device)
    k = num_classes or int(max(preds.max(), labels.max())) + 1
    return torch.bincount(labels * k + preds, minlength=k * k).view(k, k)


def per_class_recall(model: nn.Module, data: Dataset | DataLoader, num_classes: int | None = None,
                     device: torch.device | str | None = None) -> list[float]:
    """Recall of each class: the fraction of its examples predicted correctly.

    Their mean is the *balanced accuracy*; with imbalanced data, plain accuracy hides
    the rare classes, their recall shows them. A class absent from ``data`` gets NaN.
    """
    cm = confusion_matrix(model, data, num_classes, device).double()
    support = cm.sum(1)
    recall = cm.diagonal() / support.clamp_min(1)
    recall[support == 0] = float("nan")
    return recall.tolist()


def overfit_batch(model: nn.Module, data: Dataset | DataLoader, steps: int = 60, batch_size: int = 16,
                  lr: float = 0.01, device: torch.device | str | None = None, seed: int = 0) -> list[float]:
    """Debugging check: train a *copy* of ``model`` on one fixed batch and return its losses.

    A working pipeline drives the loss of a single small batch towards zero within a
    few dozen steps. If it cannot, suspect the pipeline, not the data size: labels
    misaligned with images, nothing trainable, a detached head, a far-too-small LR.
    Uses Adam on every trainable parameter; ``model`` itself is not changed.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = get_device(device)
    m = copy.deepcopy(model).to(device).train()
    params = [p for p in m.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter has requires_grad=True")
    x, y = next(iter(make_loader(data, batch_size, shuffle=True, seed=seed)))
    x, y = x.to(device), y.to(device)
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
