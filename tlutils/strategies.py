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
The fine-tuning strategies get one budget of optimizer steps and training from scratch a longer
one, each enough to converge (the domain-shift lab shows the learning curves); every cell runs
once per seed, and :meth:`DecisionMatrix.best` calls a winner clear only when :func:`verdict` does.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from . import freeze as fz
from .models import BLOCKS, ResNet, resnet_small
from .shift import adabn, extract_features, linear_probe_head
from .train import History, evaluate, fit, get_device
from .world import TaskData

STRATEGIES = (*fz.STRATEGIES, fz.SCRATCH)
"""Every strategy name, the scratch baseline last."""
SHORT_NAMES = {"feature extraction": "FE", "fine-tune top": "FT top", "full fine-tune": "FT all", "scratch": "scratch"}


def epochs_for(steps: int, n_train: int, batch_size: int, min_epochs: int = 1) -> int:
    """Epochs that give at least ``steps`` optimizer steps, and at least ``min_epochs`` epochs."""
    if steps < 1 or min_epochs < 1:
        raise ValueError(f"steps and min_epochs must be >= 1, got {steps} and {min_epochs}")
    return max(min_epochs, math.ceil(steps / math.ceil(n_train / batch_size)))


VERDICTS = ("above", "within noise", "below")


def verdict(a: Sequence[float], b: Sequence[float]) -> str:
    """Compare two results measured over seeds: ``"above"``, ``"below"`` or ``"within noise"``.

    ``a`` is ``"above"`` ``b`` only when every seed of ``a`` beats every seed of ``b`` (their
    min-max ranges do not overlap), ``"below"`` the other way round, and ``"within noise"``
    when the ranges overlap. This is the course's one rule for "beats", "clearly" and "within
    noise" (a sentence that says "on every seed" states the paired fact itself). With one seed
    each there is no spread to judge by: any difference counts.
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


def points(values: Sequence[float]) -> str:
    """A difference of accuracies over seeds in percentage points: ``"+2.1 (-0.5 to +4.0) points"``."""
    if len(values) == 0:
        raise ValueError("points needs at least one value")
    mean = 100 * sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:+.1f} points"
    return f"{mean:+.1f} ({100 * min(values):+.1f} to {100 * max(values):+.1f}) points"


def train_scratch(data: TaskData, widths: Sequence[int], *, steps: int, lr: float = 0.1,
                  weight_decay: float = 5e-4, batch_size: int = 32, seed: int = 0, curve: bool = False,
                  device=None) -> tuple[ResNet, History]:
    """Train the architecture from random weights on ``data`` (SGD, 1cycle to ``lr``) for at least ``steps`` steps.

    Returns the model and its per-epoch history; with ``curve`` the history also holds the
    validation accuracy after every epoch (the learning curve that shows whether the budget
    was enough).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = resnet_small(data.num_classes, widths=widths)
    hist = fit(model, data.train, data.val if curve else None, epochs=epochs_for(steps, len(data.train), batch_size),
               lr=lr, schedule="onecycle", weight_decay=weight_decay, batch_size=batch_size, seed=seed,
               device=device, progress=False)
    return model, hist


def fine_tune(start: ResNet, data: TaskData, strategy: str, *, steps: int, head_lr: float = 0.05,
              backbone_factor: float = 10.0, batch_size: int = 32, seed: int = 0, curve: bool = False,
              device=None) -> tuple[ResNet, History]:
    """Fine-tune a copy of ``start`` (backbone and trained head) with ``"fine-tune top"`` or ``"full fine-tune"``.

    SGD with warmup and a cosine schedule for at least ``steps`` steps (whole epochs); the head learns at
    ``head_lr``, the backbone at ``head_lr / backbone_factor``. ``"fine-tune top"`` trains
    ``layer4`` and the head only, the blocks below keep their weights and BN statistics.
    Returns the model and its history (with validation accuracy per epoch if ``curve``).
    """
    if strategy not in ("fine-tune top", "full fine-tune"):
        raise ValueError(f"strategy must be 'fine-tune top' or 'full fine-tune', got {strategy!r}")
    model = copy.deepcopy(start)
    if strategy == "fine-tune top":
        fz.freeze(model, BLOCKS[:4])
        fz.freeze_bn(model, BLOCKS[:4])  # frozen blocks keep the (adapted) statistics
    groups = fz.discriminative_groups(model, head_lr=head_lr, factor=backbone_factor)
    hist = fit(model, data.train, data.val if curve else None, epochs=epochs_for(steps, len(data.train), batch_size),
               param_groups=groups, schedule="cosine", warmup_steps=5, batch_size=batch_size, seed=seed,
               device=device, progress=False)
    return model, hist


def probe_start(pretrained: ResNet, data: TaskData | Dataset, *, adapt_bn: bool = True, seed: int = 0,
                device=None) -> ResNet:
    """Feature extraction: a copy of ``pretrained`` with a linear-probe head fit on its frozen features
    of the target's training images (``data``: a :class:`~tlutils.world.TaskData`, whose ``train``
    split is used, or the training images themselves); the start of both fine-tuning strategies.

    With ``adapt_bn`` (the default, as in the decision matrix) the BN statistics are first
    re-estimated on those images (AdaBN), so the head is fit to the statistics it will be used
    with; without it the backbone keeps the pretraining statistics. Returned in eval mode.
    """
    device = get_device(device)
    train = data.train if isinstance(data, TaskData) else data
    # adabn returns an adapted copy; the pretrained model is never changed
    probe = adabn(pretrained, train, device=device) if adapt_bn else copy.deepcopy(pretrained).to(device)
    ftr, ytr = extract_features(probe, train, device=device)
    probe.fc = linear_probe_head(ftr, ytr, len(train.classes), seed=seed).to(device)
    return probe.eval()


def run_cell(pretrained: ResNet, data: TaskData, strategies: Sequence[str] = STRATEGIES, *, steps: int = 50,
             scratch_steps: int | None = None, head_lr: float = 0.05, backbone_factor: float = 10.0,
             scratch_lr: float = 0.1, batch_size: int = 32, seed: int = 0, device=None) -> tuple[dict, dict]:
    """Run ``strategies`` on one target dataset; return ``({strategy: val accuracy}, {strategy: model})``.

    Feature extraction fits a linear head on cached features of the adapted backbone; the two
    fine-tuning strategies start from that model, probe head included (LP-FT, Kumar et al. 2022),
    so a fine-tuning run never starts from a random head that would distort the features. They
    train for at least ``steps`` optimizer steps; ``scratch`` (:func:`train_scratch`) for at least
    ``scratch_steps`` (default ``steps``): random weights need a longer budget to converge.
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    device = get_device(device)
    accs, models = {}, {}
    if any(s != "scratch" for s in strategies):
        probe = probe_start(pretrained, data, seed=seed, device=device)
        accs["feature extraction"] = evaluate(probe, data.val, device=device)["acc"]
        models["feature extraction"] = probe
    for s in strategies:
        if s == "scratch":
            model, _ = train_scratch(data, pretrained.widths, steps=scratch_steps or steps, lr=scratch_lr,
                                     batch_size=batch_size, seed=seed, device=device)
        elif s != "feature extraction":
            model, _ = fine_tune(probe, data, s, steps=steps, head_lr=head_lr, backbone_factor=backbone_factor,
                                 batch_size=batch_size, seed=seed, device=device)
        else:
            continue
        accs[s] = evaluate(model, data.val, device=device)["acc"]
        models[s] = model
    return {s: accs[s] for s in strategies}, {s: models[s] for s in strategies}


@dataclass
class DecisionMatrix:
    """Accuracies of a sweep: ``runs[condition][size][strategy]`` holds one accuracy per seed,
    ``acc[condition][size][strategy]`` their mean; ``models[(condition, size, strategy)]`` the
    models kept for later use, one per seed."""
    acc: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)

    def best(self) -> dict:
        """``{condition: {size: (best strategy, mean margin over the runner-up, clear)}}``.

        The best strategy has the highest mean accuracy. ``clear`` is True when :func:`verdict`
        puts it above the runner-up (its worst seed beats the runner-up's best), the rule every
        comparison of the course uses; otherwise the two are within noise. With one seed (no
        ``runs``), a win is never called clear.
        """
        out: dict = {}
        for cond, by_size in self.acc.items():
            out[cond] = {}
            for size, accs in by_size.items():
                (s1, a1), (s2, a2) = sorted(accs.items(), key=lambda kv: -kv[1])[:2]
                runs = self.runs.get(cond, {}).get(size, {})
                clear = len(runs.get(s1, [])) > 1 and verdict(runs[s1], runs[s2]) == "above"
                out[cond][size] = (s1, a1 - a2, clear)
        return out

    def spread(self) -> dict:
        """``{condition: {size: {strategy: max - min over seeds}}}`` (0 for one seed)."""
        return {c: {n: {s: round(max(v) - min(v), 4) for s, v in a.items()} for n, a in bs.items()}
                for c, bs in self.runs.items()}

    def table(self) -> dict:
        """A glue-able table, one row per cell: the winner, its mean accuracy, its margin and whether it is clear."""
        return {f"{cond}, {size} per class": {
                    "best (mean over seeds)": SHORT_NAMES[s], "accuracy": f"{self.acc[cond][size][s]:.1%}",
                    "margin over the runner-up": f"{100 * m:.1f} points",
                    "clear (ranges apart)": "yes" if clear else "no (within noise)"}
                for cond, by_size in self.best().items() for size, (s, m, clear) in by_size.items()}

    def gain(self, better: str, worse: str) -> dict:
        """``{condition: {size: acc[better] - acc[worse]}}`` (means), e.g. what full fine-tuning adds to a probe."""
        return {cond: {size: round(a[better] - a[worse], 4) for size, a in by_size.items()}
                for cond, by_size in self.acc.items()}

    def gain_runs(self, better: str, worse: str) -> dict:
        """``{condition: {size: [acc[better] - acc[worse] per seed]}}``: the paired differences behind :meth:`gain`."""
        return {cond: {size: [round(x - y, 4) for x, y in zip(a[better], a[worse])] for size, a in by_size.items()}
                for cond, by_size in self.runs.items()}


def decision_matrix(pretrained: ResNet, make_data: Callable[[str, int, int], TaskData], conditions: Sequence[str],
                    sizes: Sequence[int], strategies: Sequence[str] = STRATEGIES, *, seeds: Sequence[int] = (0,),
                    steps: int | Mapping[int, int] = 50, scratch_steps: int | Mapping[int, int] | None = None,
                    keep: Sequence[tuple] = (), progress: bool = True, **run_kw) -> DecisionMatrix:
    """Run every strategy for every (condition, training images per class) cell, once per seed.

    ``make_data(condition, n_per_class, seed)`` builds a cell's data; the seed also sets the
    initialisation and the shuffling, so the seeds measure the spread of the whole experiment.
    ``steps`` and ``scratch_steps`` (see :func:`run_cell`) are one budget or ``{size: budget}``.
    Models of ``keep`` entries, ``(condition, size, strategy)``, are kept in ``result.models``,
    one per seed in the order of ``seeds`` (e.g. for CKA). Results live in this run only; nothing is cached on disk.
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or len(strategies) < 2:
        raise ValueError(f"give at least two strategies from {', '.join(STRATEGIES)}; unknown: {unknown}")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"give one or more distinct seeds, got {seeds}")
    keep = set(keep)
    result = DecisionMatrix()
    cells = [(c, n, sd) for c in conditions for n in sizes for sd in seeds]
    for cond, n, sd in tqdm(cells, desc="decision matrix", disable=not progress, leave=False):
        budget = {"steps": steps, "scratch_steps": scratch_steps}
        budget = {k: (v[n] if isinstance(v, Mapping) else v) for k, v in budget.items()}
        accs, models = run_cell(pretrained, make_data(cond, n, sd), strategies, seed=sd, **budget, **run_kw)
        runs = result.runs.setdefault(cond, {}).setdefault(n, {})
        for s, a in accs.items():
            runs.setdefault(s, []).append(round(a, 4))
        for s, model in models.items():
            if (cond, n, s) in keep:
                result.models.setdefault((cond, n, s), []).append(model)
    result.acc = {c: {n: {s: round(sum(v) / len(v), 4) for s, v in a.items()} for n, a in bs.items()}
                  for c, bs in result.runs.items()}
    return result
