"""The two data tracks of the labs: the offline world (default) and the real-data track.

``track="world"`` is the course's seeded image world and its bundled 32x32 backbone: it runs
anywhere, offline, in minutes on a CPU. ``track="imagenet"`` runs the same lab code on
torchvision's ImageNet ResNet-18 and real photos (CIFAR-10 from torchvision, or an image folder
of your own), with the preprocessing those weights expect. ``TLUTILS_OFFLINE=1`` makes the
track behave as if there were no network. It needs the internet once, to
download the weights (45 MB) and CIFAR-10 (170 MB), and a GPU to be quick.

Offline, :func:`check` stops at once with a message that names the parameter to use instead.
What plays the role of the *source task* on the real track: ImageNet's own validation set is not
downloadable, so :func:`source_eval_set` labels held-out target images with the pretrained
network's ImageNet predictions. "Source accuracy" then reads as *agreement with the original
network*, 100% before fine-tuning by construction; forgetting shows as it falls.
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from . import models, world
from .train import predict

TRACKS = ("world", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_HOSTS = {"weights": "download.pytorch.org", "cifar10": "www.cs.toronto.edu"}


class TrackUnavailable(RuntimeError):
    """The real-data track cannot run here (no internet and nothing cached)."""


def check_track(track: str) -> str:
    """Return ``track`` if it is known, else raise a ValueError that lists the choices."""
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}: use 'world' (offline, the default) or 'imagenet' "
                         "(torchvision's ResNet-18 and real images; needs internet once)")
    return track


def _reachable(host: str, timeout: float = 3.0) -> bool:
    if os.environ.get("TLUTILS_OFFLINE", "") not in ("", "0"):
        return False  # TLUTILS_OFFLINE=1: behave as offline, even with a network
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def weights_url() -> str:
    """Where torchvision's ImageNet ResNet-18 weights are downloaded from."""
    from torchvision.models import ResNet18_Weights
    return ResNet18_Weights.IMAGENET1K_V1.url


def weights_file() -> Path:
    """Where torchvision caches the ImageNet ResNet-18 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights_url().rsplit("/", 1)[-1]


def download(url: str, path: str | Path) -> Path:
    """Download ``url`` to ``path``, creating its folder, and verify it.

    torchvision names its weight files ``<name>-<first hex digits of their sha256>.pth``; the
    download is checked against that prefix, and a file that does not match is deleted
    (``RuntimeError``), so a broken download never sits in the cache.
    """
    name = url.rsplit("/", 1)[-1]
    match = re.search(r"-([0-9a-f]{8,})\.", name)
    if match is None:
        raise ValueError(f"{name!r} carries no sha256 prefix (<name>-<hex digits>.<ext>) to verify the download with")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)   # a fresh machine has no hub folder yet
    torch.hub.download_url_to_file(url, str(path), hash_prefix=match.group(1))
    return path


def default_root() -> Path:
    """Where the real track keeps downloaded datasets (``~/.cache/tlutils``)."""
    return Path.home() / ".cache" / "tlutils"


def missing_downloads(root: str | Path | None = None, image_root: str | Path | None = None,
                      weights: bool = True, data: bool = True) -> dict[str, str]:
    """What the real track would still have to download, and from which host ({} if nothing)."""
    missing = {}
    if weights and not weights_file().is_file():
        missing["ResNet-18 ImageNet weights"] = _HOSTS["weights"]
    if data and image_root is None and not (Path(root or default_root()) / "cifar-10-batches-py").is_dir():
        missing["CIFAR-10"] = _HOSTS["cifar10"]
    return missing


def _require(downloads: dict[str, str]) -> None:
    unreachable = {what: host for what, host in downloads.items() if not _reachable(host)}
    if unreachable:
        what = ", ".join(f"{w} (from {h})" for w, h in unreachable.items())
        raise TrackUnavailable(
            f"track='imagenet' needs to download {what}, and this machine cannot reach the internet. "
            "Set track = \"world\" in the parameters cell (the default; it runs offline), or run the lab "
            f"where there is internet once (e.g. Colab); the files are then cached in {weights_file().parent} "
            f"and {default_root()}.")


def check(track: str, root: str | Path | None = None, image_root: str | Path | None = None) -> str:
    """Fail fast: raise :class:`TrackUnavailable` if ``track`` needs downloads that cannot happen here.

    Call it at the top of a lab, before any training. ``"world"`` always passes.
    """
    check_track(track)
    if track != "world":
        _require(missing_downloads(root, image_root))
    return track


class ImageNetResNet18(nn.Module):
    """torchvision's ResNet-18 with the course's model API (``forward_features``, ``reset_head``).

    The attribute names are torchvision's (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``), so
    :mod:`tlutils.freeze` and :mod:`tlutils.monitor` work on it unchanged.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"):
            setattr(self, name, getattr(net, name))

    @property
    def num_features(self) -> int:
        return self.fc.in_features

    def forward_features(self, x: Tensor, upto: str = "layer4") -> Tensor:
        """Backbone output after block ``upto``, global-average-pooled to (n, C)."""
        if upto not in models.BLOCKS[:-1]:
            raise ValueError(f"upto must be one of {models.BLOCKS[:-1]}, got {upto!r}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in models.BLOCKS[1:models.BLOCKS.index(upto) + 1]:
            x = getattr(self, name)(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))

    reset_head = models.ResNet.reset_head


def imagenet_resnet18(weights_path: str | Path | None = None) -> ImageNetResNet18:
    """torchvision's ResNet-18 with ImageNet weights: from ``weights_path`` (a local state dict) if
    given, else from torchvision (downloaded once, then cached)."""
    import torchvision
    net = torchvision.models.resnet18(weights=None)
    if weights_path is None:
        path = weights_file()
        if not path.is_file():
            _require({"ResNet-18 ImageNet weights": _HOSTS["weights"]})
            download(weights_url(), path)
    else:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"no state dict at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise models.CheckpointError(f"{path} is not a torchvision ResNet-18 state dict: {e}") from None
    return ImageNetResNet18(net)


def imagenet_transform(crop: int = 224, resize: int = 256):
    """The preprocessing torchvision's ImageNet weights expect: resize 256, centre-crop 224, [0, 1].

    Normalisation with the ImageNet mean/std is applied by :class:`RealImages`, which keeps the
    un-normalised images for display (``.raw``), like the world's datasets.
    """
    from torchvision import transforms
    return transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor()])


class RealImages(Dataset):
    """Real photos in memory, preprocessed for the ImageNet weights; same interface as
    :class:`tlutils.world.WorldDataset` (``raw``, ``targets``, ``classes``, ``ds[i]``)."""

    def __init__(self, images: Sequence, targets: Sequence[int], classes: Sequence[str],
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        tf = imagenet_transform()
        # uint8 keeps 1000 images at 224 px in ~150 MB
        self._raw = torch.stack([(tf(img.convert("RGB")) * 255).round().to(torch.uint8) for img in images])
        self.targets = torch.as_tensor(list(targets), dtype=torch.long)
        self.classes = list(classes)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    @property
    def raw(self) -> Tensor:
        """Un-normalised images in [0, 1], (n, 3, 224, 224)."""
        return self._raw.float() / 255

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return (self._raw[i].float() / 255 - self.mean) / self.std, int(self.targets[i])


def _per_class(targets: Sequence[int], n: int, rng: np.random.Generator) -> list[int]:
    targets = np.asarray(targets)
    idx = [rng.permutation(np.flatnonzero(targets == c))[:n] for c in np.unique(targets)]
    short = [int(c) for c, i in zip(np.unique(targets), idx) if len(i) < n]
    if short:
        raise ValueError(f"classes {short} have fewer than {n} images")
    return sorted(int(i) for part in idx for i in part)


def _subset(ds, n_per_class: int, seed: int) -> RealImages:
    keep = _per_class(ds.targets, n_per_class, np.random.default_rng(seed))
    return RealImages([ds[i][0] for i in keep], [ds.targets[i] for i in keep], ds.classes)


def load_target(track: str, task: str, n_per_class: int, n_val_per_class: int = 100, seed: int = 0,
                root: str | Path | None = None, image_root: str | Path | None = None) -> world.TaskData:
    """The lab's target task on ``track``.

    ``"world"``: ``world.load_task(task, ...)``. ``"imagenet"``: real photos, ``n_per_class`` training
    and ``n_val_per_class`` validation images per class, from ``image_root`` (an image folder with
    ``train/<class>/`` and ``val/<class>/``) if given, else CIFAR-10 (``task`` is ignored).
    """
    check_track(track)
    if track == "world":
        return world.load_task(task, n_per_class, n_val_per_class, seed=seed)
    from torchvision import datasets
    _require(missing_downloads(root, image_root, weights=False))
    if image_root is not None:
        train = datasets.ImageFolder(Path(image_root) / "train")
        val = datasets.ImageFolder(Path(image_root) / "val")
    else:
        root = Path(root or default_root())
        train = datasets.CIFAR10(str(root), train=True, download=True)
        val = datasets.CIFAR10(str(root), train=False, download=True)
    return world.TaskData(_subset(train, n_per_class, seed), _subset(val, n_val_per_class, seed + 1))


def load_backbone(track: str, weights_path: str | Path | None = None) -> nn.Module:
    """The pretrained backbone of ``track``, with its source head as ``fc``."""
    check_track(track)
    if track == "world":
        return models.load_pretrained(weights_path)
    return imagenet_resnet18(weights_path)


class _Relabelled(Dataset):
    def __init__(self, base: Dataset, targets: Tensor) -> None:
        self.base, self.targets = base, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.base[i][0], int(self.targets[i])


@torch.no_grad()
def source_eval_set(track: str, n: int, seed: int = 0, model: nn.Module | None = None,
                    images: Dataset | None = None) -> Dataset:
    """Held-out data for measuring forgetting through the source head.

    ``"world"``: ``n`` images of the source task. ``"imagenet"``: the first ``n`` of ``images``
    labelled with ``model``'s (the pretrained network's) ImageNet predictions.
    """
    check_track(track)
    if track == "world":
        return world.WorldDataset("source", n, split="val", seed=seed + 1000)
    if model is None or images is None:
        raise ValueError("track='imagenet' needs the pretrained model and the images to label")
    subset = torch.utils.data.Subset(images, range(min(n, len(images))))
    preds, _ = predict(model, subset, batch_size=64, device=next(model.parameters()).device)
    return _Relabelled(subset, preds)
