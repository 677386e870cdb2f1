"""Throughput of ``tlutils.fit`` relative to a bare PyTorch loop, same model and data.

    python benchmarks/bench_fit.py [--images 6000] [--repeats 3]

Both loops use the same DataLoader, optimizer and batch size; fit() adds its
schedule, history, callbacks hook and per-batch bookkeeping. Prints images/s
for each and the ratio (best of ``repeats`` runs each, interleaved).
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from tlutils import models, train, world


def bare_loop(model: nn.Module, loader, lr: float) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    t = time.perf_counter()
    for x, y in loader:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(loader.dataset) / (time.perf_counter() - t)


def with_fit(model: nn.Module, loader, lr: float) -> float:
    t = time.perf_counter()
    train.fit(model, loader, epochs=1, lr=lr, progress=False, device="cpu")
    return len(loader.dataset) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    a = ap.parse_args()
    ds = world.WorldDataset("source", a.images, "train")
    loader = train.make_loader(ds, a.batch_size, shuffle=True, seed=0)
    bare, fitted = [], []
    with_fit(models.resnet_small(60), loader, 0.05)  # warm-up (allocator, threads)
    for _ in range(a.repeats):
        torch.manual_seed(0)
        bare.append(bare_loop(models.resnet_small(60), loader, 0.05))
        torch.manual_seed(0)
        fitted.append(with_fit(models.resnet_small(60), loader, 0.05))
    b, f = max(bare), max(fitted)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.images} images, batch {a.batch_size}")
    print(f"bare loop : {b:8.1f} images/s")
    print(f"tlutils.fit: {f:8.1f} images/s")
    print(f"ratio fit/bare: {f / b:.3f}")


if __name__ == "__main__":
    main()
