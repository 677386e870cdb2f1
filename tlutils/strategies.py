"""The four transfer strategies, run the same way, and the decision matrix they produce.

* ``feature extraction``: frozen backbone, a linear classifier on its (cached) features;
* ``fine-tune top``: ``layer4`` and the head train, the blocks below stay frozen;
* ``full fine-tune``: every block trains, the backbone at a tenth of the head's learning rate;
  both fine-tuning strategies start from the feature-extraction head (LP-FT);
* ``scratch``: the same architecture from random weights.

The names and the blocks each strategy trains are defined once, in :data:`tlutils.freeze.STRATEGIES`.

Every pretrained strategy starts from the backbone with its BatchNorm statistics re-estimated
on the target's own training images (:func:`tlutils.shift.adabn`): the head is then trained with
the statistics of the domain it will serve, so strategies differ only in *which weights* adapt.
All trained strategies get the same number of optimizer steps, so a cell of the matrix compares
them at equal compute.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from . import freeze as fz
from .models import BLOCKS, ResNet, resnet_small
from .shift import adabn, extract_features, linear_probe_head
from .train import evaluate, fit, get_device
from .world import TaskData

STRATEGIES = (*fz.STRATEGIES, fz.SCRATCH)
"""Every strategy name, the scratch baseline last."""
SHORT_NAMES = {"feature extraction": "FE", "fine-tune top": "FT top", "full fine-tune": "FT all", "scratch": "scratch"}


def epochs_for(steps: int, n_train: int, batch_size: int) -> int:
    """Epochs that give about ``steps`` optimizer steps (at least one epoch)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return max(1, round(steps / math.ceil(n_train / batch_size)))


VERDICTS = ("above", "within noise", "below")


def verdict(a: Sequence[float], b: Sequence[float]) -> str:
    """Compare two results measured over seeds: ``"above"``, ``"below"`` or ``"within noise"``.

    ``a`` is ``"above"`` ``b`` only when every seed of ``a`` beats every seed of ``b`` (their
    min-max ranges do not overlap), ``"below"`` the other way round, and ``"within noise"``
    when the ranges overlap. With one seed each there is no spread to judge by: any
    difference counts.
    """
    if len(a) == 0 or len(b) == 0:
        raise ValueError("verdict needs at least one value on each side")
    if min(a) > max(b):
        return "above"
    if max(a) < min(b):
        return "below"
    return "within noise"


AS_WORDS = {"above": "above", "within noise": "within the seed-to-seed spread of", "below": "below"}
"""A :func:`verdict` as the words of a sentence ("A was ... B")."""


def spread(values: Sequence[float], fmt: str = ".1%") -> str:
    """``"mean (min-max)"`` of one result over seeds, e.g. ``"91.2% (89.0-93.4%)"``, for a table."""
    if len(values) == 0:
        raise ValueError("spread needs at least one value")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return format(mean, fmt)
    return f"{mean:{fmt}} ({min(values):{fmt}}\u2013{max(values):{fmt}})"


def as_points(diff: float, above: str = "above", below: str = "below") -> str:
    """A signed difference of accuracies (a fraction) in words: ``"2.0 points above"``, ``"1.5 points below"``."""
    p = round(100 * diff, 1)
    if p == 0:
        return "level with"
    return f"{abs(p):.1f} points {above if p > 0 else below}"


def points(values: Sequence[float]) -> str:
    """A difference of accuracies over seeds in percentage points: ``"+2.1 (-0.5 to +4.0) points"``."""
    if len(values) == 0:
        raise ValueError("points needs at least one value")
    mean = 100 * sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:+.1f} points"
    return f"{mean:+.1f} ({100 * min(values):+.1f} to {100 * max(values):+.1f}) points"


def run_cell(pretrained: ResNet, data: TaskData, strategies: Sequence[str] = STRATEGIES, *, steps: int = 50,
             head_lr: float = 0.05, backbone_factor: float = 10.0, scratch_lr: float = 0.1,
             batch_size: int = 32, seed: int = 0, device=None) -> tuple[dict, dict]:
    """Run ``strategies`` on one target dataset; return ``({strategy: val accuracy}, {strategy: model})``.

    Feature extraction fits a linear head on cached features of the adapted backbone; the two
    fine-tuning strategies start from that model, probe head included (LP-FT, Kumar et al. 2022),
    so a fine-tuning run never starts from a random head that would distort the features.
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    device = get_device(device)
    k = data.num_classes
    accs, models = {}, {}
    epochs = epochs_for(steps, len(data.train), batch_size)
    if any(s != "scratch" for s in strategies):
        probe = adabn(pretrained, data.train, device=device)  # a copy, with the target's statistics
        ftr, ytr = extract_features(probe, data.train, device=device)
        fva, yva = extract_features(probe, data.val, device=device)
        probe.fc = linear_probe_head(ftr, ytr, k, seed=seed).to(device)
        with torch.no_grad():
            accs["feature extraction"] = float((probe.fc(fva.to(device)).argmax(1).cpu() == yva).float().mean())
        models["feature extraction"] = probe
    for s in strategies:
        if s == "feature extraction":
            continue
        if s == "scratch":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = resnet_small(k, widths=pretrained.widths).to(device)
            groups = [{"params": list(model.parameters()), "lr": scratch_lr}]
            schedule, warmup = "onecycle", 0
        else:
            model = copy.deepcopy(probe)
            if s == "fine-tune top":
                fz.freeze(model, BLOCKS[:4])
                fz.freeze_bn(model, BLOCKS[:4])  # frozen blocks keep the (adapted) statistics
            groups = fz.discriminative_groups(model, head_lr=head_lr, factor=backbone_factor)
            schedule, warmup = "cosine", 5
        fit(model, data.train, epochs=epochs, param_groups=groups, schedule=schedule, warmup_steps=warmup,
            batch_size=batch_size, seed=seed, device=device, progress=False)
        accs[s] = evaluate(model, data.val, device=device)["acc"]
        models[s] = model
    return {s: accs[s] for s in strategies}, {s: models[s] for s in strategies}


@dataclass
class DecisionMatrix:
    """Accuracies ``acc[condition][size][strategy]`` of a sweep, and models kept for later use."""
    acc: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)

    def best(self) -> dict:
        """``{condition: {size: (best strategy, margin over the runner-up)}}``."""
        out: dict = {}
        for cond, by_size in self.acc.items():
            out[cond] = {}
            for size, accs in by_size.items():
                ranked = sorted(accs.items(), key=lambda kv: -kv[1])
                out[cond][size] = (ranked[0][0], ranked[0][1] - ranked[1][1])
        return out

    def table(self) -> dict:
        """A compact, glue-able summary: ``{"<condition> | <size>/class": "<best> (+margin)"}``."""
        return {f"{cond} | {size}/class": f"{SHORT_NAMES[s]} (+{m:.3f})"
                for cond, by_size in self.best().items() for size, (s, m) in by_size.items()}

    def gain(self, better: str, worse: str) -> dict:
        """``{condition: {size: acc[better] - acc[worse]}}``, e.g. what full fine-tuning adds to a probe."""
        return {cond: {size: round(a[better] - a[worse], 4) for size, a in by_size.items()}
                for cond, by_size in self.acc.items()}


def decision_matrix(pretrained: ResNet, make_data: Callable[[str, int], TaskData], conditions: Sequence[str],
                    sizes: Sequence[int], strategies: Sequence[str] = STRATEGIES, *, keep: Sequence[tuple] = (),
                    progress: bool = True, **run_kw) -> DecisionMatrix:
    """Run every strategy for every (condition, training images per class) cell.

    ``make_data(condition, n_per_class)`` builds a cell's data. Models of ``keep`` entries,
    ``(condition, size, strategy)``, are kept in ``result.models`` (e.g. for CKA). Results live in
    this run only; nothing is cached on disk.
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or len(strategies) < 2:
        raise ValueError(f"give at least two strategies from {', '.join(STRATEGIES)}; unknown: {unknown}")
    keep = set(keep)
    result = DecisionMatrix()
    cells = [(c, n) for c in conditions for n in sizes]
    for cond, n in tqdm(cells, desc="decision matrix", disable=not progress, leave=False):
        accs, models = run_cell(pretrained, make_data(cond, n), strategies, **run_kw)
        result.acc.setdefault(cond, {})[n] = {s: round(a, 4) for s, a in accs.items()}
        for s, model in models.items():
            if (cond, n, s) in keep:
                result.models[(cond, n, s)] = model
    return result
