"""Representations and domain shift: features, linear probes, MMD, CKA and AdaBN.

* :func:`mmd2_unbiased` is the unbiased estimator of Gretton et al. (2012) with an
  RBF kernel on *squared Euclidean distances*, bandwidth from the median heuristic.
* :func:`linear_cka` is linear CKA (Kornblith et al. 2019) on column-centred features.
* :func:`adabn` re-estimates BatchNorm statistics on unlabelled target data (Li et al. 2016).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .train import get_device, inference_batch_size, inference_input, make_loader, map_batches, model_device


# --------------------------------------------------------------------------- features

@torch.no_grad()
def extract_features(model: nn.Module, data: Dataset | DataLoader, upto: str = "layer4",
                     batch_size: int | None = None, device=None) -> tuple[Tensor, Tensor]:
    """Pooled backbone features after block ``upto`` and the labels, in eval mode (CPU tensors)."""
    feats, labels = map_batches(model, data, lambda x: model.forward_features(x, upto=upto).float().cpu(),
                                batch_size, device)
    return torch.cat(feats), labels


def linear_probe_head(features: Tensor, labels: Tensor, num_classes: int, *, seed: int = 0, epochs: int = 100,
                      lr: float = 0.1, weight_decay: float = 1e-4) -> nn.Linear:
    """A linear probe: multinomial logistic regression on frozen features, as an ``nn.Linear`` head.

    The features are standardised with their own mean and standard deviation, the regression
    is fit full-batch with Adam (deterministic, well under a second, no extra dependency), and
    the standardisation is then folded into the weights (``W' = W / sd``, ``b' = b - (mu / sd) W``):
    ``model.fc = linear_probe_head(...)`` reads the raw pooled features directly. Features that
    are constant on ``features`` get zero weight. The trained head is also the starting point
    of LP-FT (probe, then fine-tune).
    """
    if features.dim() != 2 or len(features) != len(labels) or len(features) < 2:
        raise ValueError("need a (n, d) feature matrix with n >= 2 and one label per row, "
                         f"got features {tuple(features.shape)} and {len(labels)} labels")
    if num_classes < 2 or int(labels.max()) >= num_classes or int(labels.min()) < 0:
        raise ValueError(f"labels must lie in [0, num_classes) with num_classes >= 2, got num_classes={num_classes}")
    features = features.float()
    mu, sd = features.mean(0), features.std(0)
    varies = sd > 1e-6 * max(float(sd.max()), 1.0)
    sd = torch.where(varies, sd, torch.ones_like(sd))
    x = (features - mu) / sd
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(x.shape[1], num_classes, generator=g) * 0.01 * varies[:, None]).requires_grad_(True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(x @ w + b, labels).backward()
        opt.step()
    w = w.detach() * varies[:, None]
    head = nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_((w / sd[:, None]).T)
        head.bias.copy_(b.detach() - (mu / sd) @ w)
    return head


def linear_probe(train_feats: Tensor, train_labels: Tensor, val_feats: Tensor, val_labels: Tensor, *,
                 seed: int = 0, epochs: int = 100, **head_kw) -> float:
    """Validation accuracy of :func:`linear_probe_head` fit on the training features."""
    k = int(max(train_labels.max(), val_labels.max())) + 1
    head = linear_probe_head(train_feats, train_labels, max(k, 2), seed=seed, epochs=epochs, **head_kw)
    with torch.no_grad():
        return float((head(val_feats.float()).argmax(1) == val_labels).float().mean())


# --------------------------------------------------------------------------- MMD

def pairwise_sq_dists(x: Tensor, y: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of ``x`` and ``y``."""
    d = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None] - 2 * x @ y.T
    return d.clamp_min(0)


def median_heuristic(x: Tensor, y: Tensor) -> float:
    """Bandwidth sigma: the median pairwise distance of the pooled sample (off-diagonal)."""
    z = torch.cat([x, y]).double()
    d = pairwise_sq_dists(z, z)
    off = d[~torch.eye(len(z), dtype=torch.bool)]
    return float(off.median().sqrt())


def rbf_kernel(x: Tensor, y: Tensor, sigma: float) -> Tensor:
    """``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))``."""
    return torch.exp(-pairwise_sq_dists(x, y) / (2 * sigma ** 2))


def mmd2_unbiased(x: Tensor, y: Tensor, sigma: float | None = None) -> float:
    """Unbiased MMD^2_u between samples ``x`` (m, d) and ``y`` (n, d) with an RBF kernel.

    ``1/(m(m-1)) sum_{i!=j} k(x_i,x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i,y_j)
    - 2/(mn) sum_{i,j} k(x_i,y_j)``. It can be slightly negative when the
    distributions are equal. ``sigma`` defaults to the median heuristic.
    """
    x, y = x.double().flatten(1), y.double().flatten(1)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("MMD needs at least two samples on each side")
    if sigma is None:
        sigma = median_heuristic(x, y)
    kxx, kyy, kxy = rbf_kernel(x, x, sigma), rbf_kernel(y, y, sigma), rbf_kernel(x, y, sigma)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def mmd_permutation_test(x: Tensor, y: Tensor, n_permutations: int = 200, seed: int = 0) -> tuple[float, float]:
    """MMD^2_u and its permutation p-value (the kernel bandwidth is fixed from the pooled sample)."""
    sigma = median_heuristic(x, y)
    observed = mmd2_unbiased(x, y, sigma)
    z = torch.cat([x, y])
    g = torch.Generator().manual_seed(seed)
    hits = 0
    for _ in range(n_permutations):
        idx = torch.randperm(len(z), generator=g)
        hits += mmd2_unbiased(z[idx[:len(x)]], z[idx[len(x):]], sigma) >= observed
    return observed, (hits + 1) / (n_permutations + 1)


# --------------------------------------------------------------------------- CKA

def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred features.

    ``x`` (n, p) and ``y`` (n, q) are two representations of the same n examples.
    1 means identical up to rotation and isotropic scaling.
    """
    if len(x) != len(y):
        raise ValueError("x and y must describe the same examples (same number of rows)")
    x = x.double().flatten(1)
    y = y.double().flatten(1)
    x = x - x.mean(0)
    y = y - y.mean(0)
    num = torch.linalg.matrix_norm(y.T @ x) ** 2
    den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(num / den)


# --------------------------------------------------------------------------- AdaBN

@torch.no_grad()
def adabn(model: nn.Module, data: Dataset | DataLoader, batch_size: int = 256,
          inplace: bool = False, device=None) -> nn.Module:
    """Re-estimate every BatchNorm layer's running statistics on (unlabelled) ``data``.

    The weights do not change; only running mean/var. Each layer's new mean and (unbiased)
    variance are those of *all* its input values on ``data``: every pixel of every image counts
    once, so a short last batch weighs only its images, and the differences between batches are
    part of the variance (PyTorch's ``momentum=None`` would average the per-batch statistics
    instead). While the data passes, every BN layer normalises each batch with that batch's own
    statistics, as in training, so the inputs a deeper layer sees depend a little on
    ``batch_size``. Labels in ``data`` are ignored. Returns the adapted model (a copy unless
    ``inplace``), in eval mode.
    """
    device = model_device(model) if device is None else get_device(device)
    model = model if inplace else copy.deepcopy(model)
    model.to(device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    moments: dict = {}

    def accumulate(layer: nn.Module, inputs: tuple) -> None:
        x = inputs[0].detach().double()
        dims = [0, *range(2, x.dim())]
        n, s1, s2 = moments.get(layer, (0, 0.0, 0.0))
        moments[layer] = (n + x.numel() // x.shape[1], s1 + x.sum(dims), s2 + (x * x).sum(dims))

    hooks = [m.register_forward_pre_hook(accumulate) for m in bns]
    for m in bns:
        nn.Module.train(m, True)  # batch statistics in the pass; also works on layers frozen with freeze_bn
    try:
        for x, _ in make_loader(data, batch_size, shuffle=False):
            model.forward_features(x.to(device))
    finally:
        for h in hooks:
            h.remove()
    for m in bns:
        if m not in moments:
            continue  # a layer the forward pass does not reach keeps its statistics
        n, s1, s2 = moments[m]
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0) * n / max(n - 1, 1)
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_(var.to(m.running_var.dtype))
    return model.eval()


# --------------------------------------------------------------------------- block by block

def block_maps(model: nn.Module, x: Tensor, blocks=None) -> dict[str, Tensor]:
    """Activation maps (n, C, h, w) after each backbone block for a batch ``x``, in one pass.

    ``blocks`` defaults to every backbone block (``conv1``, the stem after its ReLU, then
    ``layer1``..``layer4``). The model's mode is left as it is: call ``model.eval()`` first.
    """
    from .models import BLOCKS
    backbone = BLOCKS[:-1]
    blocks = list(backbone if blocks is None else blocks)
    unknown = [b for b in blocks if b not in backbone]
    if unknown:
        raise ValueError(f"unknown block(s) {unknown}; choose from {', '.join(backbone)}")
    out = {}
    h = model.relu(model.bn1(model.conv1(x)))
    for name in backbone:
        if name != "conv1":
            h = getattr(model, name)(h)
        if name in blocks:
            out[name] = h
        if len(out) == len(blocks):  # nothing deeper is needed
            break
    return out


@torch.no_grad()
def block_features(model: nn.Module, data: Dataset | DataLoader, blocks=None, pool: int = 1,
                   batch_size: int | None = None, device=None) -> tuple[dict[str, Tensor], Tensor]:
    """Pooled features of every block in ``blocks`` (one forward pass per batch) and the labels.

    Each map is average-pooled to ``pool`` x ``pool`` cells and flattened: ``pool=1`` gives
    the same vectors as :func:`extract_features`; larger grids keep some spatial layout.
    Runs in eval mode; returns CPU tensors.
    """
    if not isinstance(pool, int) or pool < 1:
        raise ValueError(f"pool must be a positive int, got {pool!r}")
    batches, labels = map_batches(model, data, lambda x: {
        name: nn.functional.adaptive_avg_pool2d(m, pool).flatten(1).float().cpu()
        for name, m in block_maps(model, x, blocks).items()}, batch_size, device)
    return {name: torch.cat([b[name] for b in batches]) for name in batches[0]}, labels


def probe_by_block(model: nn.Module, train_data: Dataset | DataLoader, val_data: Dataset | DataLoader,
                   blocks=None, pool: int = 1, device=None, **probe_kw) -> dict[str, float]:
    """Linear-probe validation accuracy on the pooled features of each block (see :func:`linear_probe`).

    Where along the network the information a task needs is linearly readable.
    """
    tr, ytr = block_features(model, train_data, blocks, pool, device=device)
    va, yva = block_features(model, val_data, blocks, pool, device=device)
    return {b: linear_probe(tr[b], ytr, va[b], yva, **probe_kw) for b in tr}


def cka_by_block(model_a: nn.Module, model_b: nn.Module, data: Dataset | DataLoader, blocks=None,
                 pool: int = 1, device=None) -> dict[str, float]:
    """Linear CKA between the two models' pooled features of each block, on the same images.

    Compare a pretrained network with its fine-tuned copy: 1 means the block's
    representation did not change (up to rotation and isotropic scaling).
    """
    fa, _ = block_features(model_a, data, blocks, pool, device=device)
    fb, _ = block_features(model_b, data, blocks, pool, device=device)
    return {b: linear_cka(fa[b], fb[b]) for b in fa}


def luminance_fraction(weight: Tensor) -> Tensor:
    """Per filter of a first-layer weight (out, 3, k, k): the share of its energy that is colour-blind.

    The colour-blind part is the average over the input channels (the same pattern on R, G
    and B, which responds to brightness only); the rest responds to colour differences.
    Random filters give about 1/3; pure edge detectors in grey give 1. Returns a CPU tensor.
    """
    if weight.dim() != 4 or weight.shape[1] < 2:
        raise ValueError(f"expected a conv weight (out, channels >= 2, k, k), got shape {tuple(weight.shape)}")
    w = weight.detach().cpu().double()   # float64 for exact ratios; MPS has no float64
    grey = w.mean(1, keepdim=True).expand_as(w)
    return (grey.pow(2).sum((1, 2, 3)) / w.pow(2).sum((1, 2, 3)).clamp_min(1e-30)).float()


# --------------------------------------------------------------------------- severity sweeps

def spearman(x, y) -> float:
    """Spearman rank correlation of two equal-length sequences (ties get their average rank).

    NaN when either sequence is constant. No SciPy needed.
    """
    import numpy as np

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two 1-d sequences of the same length >= 2, got shapes {a.shape} and {b.shape}")

    def ranks(v):
        r = np.empty(len(v))
        r[v.argsort(kind="mergesort")] = np.arange(len(v), dtype=float)
        for u in np.unique(v):  # ties share their average rank
            r[v == u] = r[v == u].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _raw_of(data) -> tuple[Tensor, Tensor]:
    if not hasattr(data, "raw") or not hasattr(data, "targets"):
        raise ValueError("data must be a clean tlutils.world.WorldDataset (it needs .raw images in [0, 1] and .targets)")
    return data.raw, data.targets


@torch.no_grad()
def _features_of(model: nn.Module, images: Tensor, device) -> Tensor:
    from .world import normalize
    batch_size = inference_batch_size(model_device(model) if device is None else device)
    was_training = model.training
    model.eval().to(device)
    out = [model.forward_features(inference_input(normalize(images[i:i + batch_size]), device)).float().cpu()
           for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def severity_report(model: nn.Module, data, kind: str, severity: int, reference: Tensor, *,
                    sigma: float | None = None, probe_train=None, n_show: int = 8, seed: int = 0,
                    device=None) -> dict:
    """What one shift does to a classifier: shifted example images, accuracy and feature MMD^2.

    Args:
        model: a classifier for ``data``'s classes (backbone + ``fc``); used in eval mode.
        data: clean images of the target task (a :class:`~tlutils.world.WorldDataset`); the shift
            is applied to its raw images, which are then normalised with the source statistics.
        kind, severity: the shift (:data:`tlutils.world.SHIFTS`, severity 0..5).
        reference: backbone features of *other* clean images of the task (an independent sample:
            MMD compares two samples, not an image with its own shifted copy).
        sigma: RBF bandwidth; default the median heuristic on the pooled sample. Pass one fixed
            value (e.g. from the clean reference) to compare MMD^2 across severities.
        probe_train: clean training images; if given, a linear probe is trained on their shifted
            features and scored on the shifted ``data`` (``probe_acc``): how much class information
            the shifted features still hold, whatever the classifier's head does with them.

    Returns a dict with ``kind``, ``severity``, ``images`` and ``labels`` (the first ``n_show``
    shifted images, in [0, 1]), ``accuracy``, ``mmd2`` and, with ``probe_train``, ``probe_acc``.
    """
    from .world import apply_shift
    device = model_device(model) if device is None else get_device(device)
    raw, labels = _raw_of(data)
    shifted = apply_shift(raw, kind, severity, seed=seed)
    feats = _features_of(model, shifted, device)
    with torch.no_grad():
        logits = model.fc.to(device)(feats.to(device)).cpu()
    report = {"kind": kind, "severity": int(severity), "images": shifted[:n_show], "labels": labels[:n_show],
              "accuracy": float((logits.argmax(1) == labels).float().mean()),
              "mmd2": mmd2_unbiased(reference, feats, sigma)}
    if probe_train is not None:
        raw_tr, y_tr = _raw_of(probe_train)
        f_tr = _features_of(model, apply_shift(raw_tr, kind, severity, seed=seed + 1), device)
        report["probe_acc"] = linear_probe(f_tr, y_tr, feats, labels, seed=seed)
    return report


def severity_sweep(model: nn.Module, data, kinds, severities, reference: Tensor, *, probe_train=None,
                   n_show: int = 8, seed: int = 0, device=None, progress: bool = True) -> list[dict]:
    """:func:`severity_report` for every (kind, severity), with one RBF bandwidth for all of them.

    The bandwidth is the median heuristic on the clean reference (its two halves), so MMD^2
    values are on one scale across kinds and severities. Severity 0 is computed once and
    repeated for every kind.
    """
    from tqdm.auto import tqdm
    if len(reference) < 4:
        raise ValueError("reference needs at least 4 clean feature vectors")
    half = len(reference) // 2
    sigma = median_heuristic(reference[:half], reference[half:])
    kw = dict(sigma=sigma, probe_train=probe_train, n_show=n_show, seed=seed, device=device)
    clean = severity_report(model, data, next(iter(kinds)), 0, reference, **kw) if 0 in severities else None
    rows = []
    for kind in tqdm(list(kinds), desc="severity sweep", disable=not progress, leave=False):
        for s in severities:
            rows.append({**clean, "kind": kind} if s == 0 else severity_report(model, data, kind, s, reference, **kw))
    return rows
