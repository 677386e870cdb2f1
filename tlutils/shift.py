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

from .train import get_device, make_loader


# --------------------------------------------------------------------------- features

@torch.no_grad()
def extract_features(model: nn.Module, data: Dataset | DataLoader, upto: str = "layer4",
                     batch_size: int = 512, device=None) -> tuple[Tensor, Tensor]:
    """Pooled backbone features after block ``upto`` and the labels, in eval mode (CPU tensors)."""
    device = get_device(device) if not isinstance(device, torch.device) else device
    was_training = model.training
    model.eval().to(device)
    feats, labels = [], []
    for x, y in make_loader(data, batch_size, shuffle=False):
        feats.append(model.forward_features(x.to(device), upto=upto).float().cpu())
        labels.append(y)
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def linear_probe(train_feats: Tensor, train_labels: Tensor, val_feats: Tensor, val_labels: Tensor,
                 epochs: int = 100, lr: float = 0.1, weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Validation accuracy of a multinomial logistic regression on frozen features.

    Features are standardised with the training statistics and the model is fit
    full-batch with Adam: no extra dependency, deterministic, well under a second.
    """
    mu, sd = train_feats.mean(0), train_feats.std(0) + 1e-6
    xtr, xva = (train_feats - mu) / sd, (val_feats - mu) / sd
    k = int(max(train_labels.max(), val_labels.max())) + 1
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(xtr.shape[1], k, generator=g) * 0.01).requires_grad_(True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(xtr @ w + b, train_labels).backward()
        opt.step()
    with torch.no_grad():
        return float(((xva @ w + b).argmax(1) == val_labels).float().mean())


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

    The weights do not change; only running mean/var, recomputed as a cumulative
    average over the data (momentum ``None``). Labels in ``data`` are ignored.
    Returns the adapted model (a copy unless ``inplace``), in eval mode.
    """
    device = get_device(device) if not isinstance(device, torch.device) else device
    model = model if inplace else copy.deepcopy(model)
    model.to(device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
        nn.Module.train(m, True)  # also works on layers frozen with freeze_bn
    for x, _ in make_loader(data, batch_size, shuffle=False):
        model.forward_features(x.to(device))
    for m, (momentum, _) in zip(bns, saved):
        m.momentum = momentum
    return model.eval()
