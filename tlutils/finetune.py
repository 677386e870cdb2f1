"""Fine-tuning recipes, and replicated fine-tuning runs for experiments (sweeps, ablations).

A :class:`Recipe` says which blocks train after the probe (or instead of it), at which learning
rates, with which schedule, BatchNorm mode, clipping and penalty. :func:`finetune` applies it to a
model. :func:`run_job` is one such run on shared data, picklable for
:class:`tlutils.parallel.WorkerPool`; :func:`mean_std` summarises replicates.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from . import freeze
from .monitor import EpochAccuracyMonitor
from .models import BLOCKS
from .train import L2SP, Callback, History, evaluate, fit

BN_MODES = ("batch", "frozen")
STARTS = ("probe", "random", "scratch")


@dataclass(frozen=True)
class Recipe:
    """One way to fine-tune.

    Args:
        blocks: the trainable blocks (see :data:`tlutils.models.BLOCKS`).
        lr: the head's learning rate (SGD with momentum 0.9, as for the probe).
        backbone_lr: the learning rate of the trainable backbone blocks; ``None`` means ``lr``
            (one optimizer, one learning rate for everything).
        bn: ``"batch"``: every BatchNorm layer follows ``model.train()`` (PyTorch's default: batch
            statistics, running statistics updated); ``"frozen"``: every one stays in eval mode.
        schedule, warmup_steps, clip_grad_norm: passed to :func:`tlutils.train.fit`.
        l2sp_alpha: strength of the L2-SP penalty toward the starting backbone (``None``: none).
        epochs: training epochs.
    """
    blocks: tuple[str, ...] = BLOCKS
    lr: float = 0.1
    backbone_lr: float | None = None
    bn: str = "batch"
    schedule: str = "constant"
    warmup_steps: int = 0
    clip_grad_norm: float | None = None
    l2sp_alpha: float | None = None
    epochs: int = 3

    def __post_init__(self) -> None:
        if self.bn not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, got {self.bn!r}")
        unknown = [b for b in self.blocks if b not in BLOCKS]
        if unknown or "fc" not in self.blocks:
            raise ValueError(f"blocks must be names from {BLOCKS} and include 'fc', got {self.blocks}")

    def replace(self, **changes) -> "Recipe":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def prepare(model: nn.Module, recipe: Recipe) -> list[dict]:
    """Make ``recipe.blocks`` trainable, set the BatchNorm mode, and return the parameter groups."""
    freeze.freeze(model, BLOCKS)
    freeze.unfreeze(model, recipe.blocks)
    freeze.freeze_bn(model)
    if recipe.bn == "batch":
        freeze.unfreeze_bn(model)
    backbone_lr = recipe.lr if recipe.backbone_lr is None else recipe.backbone_lr
    return freeze.discriminative_groups(model, head_lr=recipe.lr, factor=recipe.lr / backbone_lr)


def finetune(model: nn.Module, recipe: Recipe, train: Dataset, val: Dataset | None = None, *,
             batch_size: int = 32, seed: int = 0, device=None, callbacks: Iterable[Callback] = (),
             progress: bool = False, desc: str = "finetune") -> History:
    """Fine-tune ``model`` in place with ``recipe``; returns :func:`tlutils.train.fit`'s history.

    L2-SP pulls the backbone toward its weights at the start of this call. A run whose loss
    becomes NaN or infinite trains on (``fit``'s ``stop_on_nonfinite=False``): the lab's sweep
    reports divergence as a result ("diverged" in its table) rather than stopping at it.
    """
    groups = prepare(model, recipe)
    penalty = L2SP(model, alpha=recipe.l2sp_alpha) if recipe.l2sp_alpha else None
    return fit(model, train, val, epochs=recipe.epochs, param_groups=groups, schedule=recipe.schedule,
               warmup_steps=recipe.warmup_steps, clip_grad_norm=recipe.clip_grad_norm, penalty=penalty,
               batch_size=batch_size, seed=seed, device=device, callbacks=callbacks, progress=progress,
               desc=desc, stop_on_nonfinite=False)


def reinitialise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh random weights (and BatchNorm statistics) for every layer: the from-scratch baseline."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif hasattr(m, "reset_parameters"):
                m.reset_parameters()
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
    return model


def run_job(job: dict, shared: dict) -> dict:
    """One replicated run: ``job = {"rep": i, "start": "probe" | "random" | "scratch", "recipe": Recipe}``.

    ``"scratch"`` trains the same architecture from random weights (see :func:`reinitialise`).

    With ``job["curve"]`` false, the target validation accuracy is measured after the last epoch only;
    ``job["curve_every"] = k`` adds ``"curve"``, the accuracy after every k-th epoch (``{"epoch", "acc"}`` rows);
    with ``job["ood"]`` true, the out-of-distribution accuracy is measured too (it costs one more pass
    over the validation images, which a sweep that does not report it need not pay).

    ``shared["reps"][i]`` holds that replicate's ``data`` (a :class:`tlutils.world.TaskData`),
    ``probe`` (the trained probe), ``init`` (the pretrained backbone with a fresh head), ``seed``,
    and optionally ``ood_val`` (the target validation images under a shift); ``shared`` also holds
    ``source_head``, ``source_val``, ``batch_size`` and ``device``. Returns the target validation
    accuracy after every epoch, the final source accuracy through the original head, the final
    out-of-distribution accuracy (``None`` unless asked for) and whether the training loss stayed finite.
    """
    rep = shared["reps"][job["rep"]]
    if job["start"] not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {job['start']!r}")
    model = copy.deepcopy(rep["probe"] if job["start"] == "probe" else rep["init"])
    if job["start"] == "scratch":
        reinitialise(model, seed=rep["seed"])
    device = shared.get("device")
    curve = job.get("curve", True)
    every = [EpochAccuracyMonitor(rep["data"].val, job["curve_every"])] if job.get("curve_every") else []
    hist = finetune(model, job["recipe"], rep["data"].train, rep["data"].val if curve else None,
                    batch_size=shared["batch_size"], seed=rep["seed"], device=device, callbacks=every)
    ood = rep.get("ood_val") if job.get("ood") else None
    if job.get("ood") and ood is None:
        raise ValueError("job asks for the out-of-distribution accuracy, but its replicate has no 'ood_val'")
    val = hist["val_acc"] if curve else [evaluate(model, rep["data"].val, device=device)["acc"]]
    out = {"val_acc": val,
           "source_acc": evaluate(model, shared["source_val"], head=shared["source_head"], device=device)["acc"],
           "ood_acc": evaluate(model, ood, device=device)["acc"] if ood is not None else None,
           "finite": all(math.isfinite(v) for v in hist["train_loss"])}
    if every:
        out["curve"] = every[0].epochs
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of replicate results."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def train_head(model: nn.Module, train: Dataset, *, epochs: int, lr: float, schedule: str = "cosine",
               batch_size: int = 32, seed: int = 0, device=None, progress: bool = False) -> History:
    """Step 1 of the fix, as the incident did it: freeze the whole backbone (BatchNorm in eval mode too)
    and train ``fc`` only, with SGD through the network, so that fine-tuning continues the same optimizer
    from there. Only to read features (no fine-tuning after it), ``shift.linear_probe_head`` fits the
    same linear head on features extracted once, faster."""
    freeze.freeze(model)
    freeze.freeze_bn(model)
    return fit(model, train, None, epochs=epochs, lr=lr, schedule=schedule, batch_size=batch_size,
               seed=seed, device=device, progress=progress, desc="probe")


def table(rows: Sequence[tuple[str, dict, Sequence[dict]]], digits: int = 4) -> dict[str, dict]:
    """A table of replicate results: ``rows`` are ``(label, fixed columns, [metrics of each replicate])``.

    Each row gets its fixed columns, then for every metric ``m`` its mean (column ``m``) and sample
    standard deviation (column ``m + " sd"``) over the replicates, and ``n``, the replicate count.
    """
    out: dict[str, dict] = {}
    for label, fixed, reps in rows:
        if not reps:
            raise ValueError(f"row {label!r} has no replicates")
        row = dict(fixed)
        for key in reps[0]:
            m, s = mean_std([r[key] for r in reps])
            row[key], row[f"{key} sd"] = round(m, digits), round(s, digits)
        row["n"] = len(reps)
        out[label] = row
    return out
