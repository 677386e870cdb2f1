"""Where the real-data track's time goes on the CPU, per image: preparing the photos once,
fetching them every epoch, and the ResNet-18 forward/backward they feed.

    python benchmarks/bench_real_data.py [--images 256] [--size 500x375]

Builds a small image folder of random photos (nothing is downloaded), loads it the way
``tracks.load_target(..., image_root=...)`` does, and reports CPU milliseconds per image
(process time, so other jobs on the machine inflate the figures less than wall time).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tlutils import tracks, train


def cpu_ms(fn, n: int) -> float:
    """CPU milliseconds per item of ``fn()``, which handles ``n`` items."""
    t = time.process_time()
    fn()
    return (time.process_time() - t) * 1000 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", default="500x375", help="width x height of the fake photos")
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        for split in ("train", "val"):
            for c in ("a", "b"):
                (Path(root) / split / c).mkdir(parents=True)
                for i in range(a.images // 2):
                    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                        Path(root) / split / c / f"{i}.jpg", quality=90)
        tracks.imagenet_transform()  # imports torchvision.transforms outside the timings
        data: list = []
        prep = cpu_ms(lambda: data.append(tracks.load_target("imagenet", "", a.images // 2, 1, image_root=root)),
                      a.images + 2)
    ds = data[0].train
    fetch = cpu_ms(lambda: [ds[i] for i in range(len(ds))], len(ds))
    loader = train.make_loader(ds, a.batch_size, shuffle=True)
    batches = cpu_ms(lambda: [b for b in loader], len(ds))
    model = tracks.ImageNetResNet18(__import__("torchvision").models.resnet18())
    x, y = next(iter(loader))
    x, y = x[:8], y[:8]

    def step():
        torch.nn.functional.cross_entropy(model(x), y).backward()

    step()  # warm-up
    compute = cpu_ms(step, len(x))
    print(f"torch {torch.__version__}, 1 thread, {a.images} photos of {w}x{h}, batch {a.batch_size}")
    print(f"decode + resize + crop, once per image : {prep:7.2f} ms/image")
    print(f"ds[i] (uint8 -> normalised float)      : {fetch:7.2f} ms/image")
    print(f"DataLoader batches (ds[i] + collate)   : {batches:7.2f} ms/image")
    print(f"ResNet-18 forward + backward at 224 px : {compute:7.2f} ms/image")


if __name__ == "__main__":
    main()
