"""A small ResNet for 32x32 images and the bundled pretrained checkpoint.

Attribute names follow ``torchvision.models.resnet`` (``conv1``, ``bn1``,
``layer1``..``layer4``, ``avgpool``, ``fc``) so lab code reads like code for a
real ResNet-18. The network has about 0.3M parameters and trains at roughly a
thousand images per second on a laptop CPU.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

WEIGHTS_DIR = Path(__file__).parent / "weights"
CHECKPOINT = WEIGHTS_DIR / "resnet_source.pt"
MODEL_CARD = WEIGHTS_DIR / "model_card.json"

BLOCKS = ("conv1", "layer1", "layer2", "layer3", "layer4", "fc")
"""Names of the network's blocks, input to output; ``conv1`` stands for the stem (conv1 + bn1)."""


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (as in torchvision)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A CIFAR-style ResNet: a 3x3 stem without max-pooling, then four stages.

    Args:
        num_classes: outputs of the ``fc`` head.
        widths: channels of ``layer1``..``layer4``.
        in_channels: input channels (3 for RGB).
    """

    def __init__(self, num_classes: int = 60, widths: Sequence[int] = (16, 32, 64, 128),
                 in_channels: int = 3) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError("widths must list four stage widths")
        self.widths = tuple(int(w) for w in widths)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(widths[0], widths[0], 1)
        self.layer2 = BasicBlock(widths[0], widths[1], 2)
        self.layer3 = BasicBlock(widths[1], widths[2], 2)
        self.layer4 = BasicBlock(widths[2], widths[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_features(self) -> int:
        """Width of the pooled feature vector that ``fc`` reads."""
        return self.widths[3]

    def forward_features(self, x: Tensor, upto: str = "layer4") -> Tensor:
        """Backbone output after block ``upto`` (global-average-pooled to (n, C))."""
        if upto not in BLOCKS[:-1]:
            raise ValueError(f"upto must be one of {BLOCKS[:-1]}, got {upto!r}")
        x = self.relu(self.bn1(self.conv1(x)))
        for name in BLOCKS[1:BLOCKS.index(upto) + 1]:
            x = getattr(self, name)(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))

    def reset_head(self, num_classes: int, seed: int | None = None) -> nn.Linear:
        """Put a freshly initialised ``fc`` with ``num_classes`` outputs; return the old head.

        Keep the returned head: it is the source-task classifier that measures forgetting.
        """
        old = self.fc
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                new = nn.Linear(self.num_features, num_classes)
        else:
            new = nn.Linear(self.num_features, num_classes)
        self.fc = new.to(old.weight.device)
        return old


def resnet_small(num_classes: int = 60, **kwargs) -> ResNet:
    """The course's backbone architecture with random weights."""
    return ResNet(num_classes=num_classes, **kwargs)


class CheckpointError(RuntimeError):
    """The bundled checkpoint is missing, tampered with, or does not fit the model."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_card(path: str | Path = MODEL_CARD) -> dict:
    """The bundled checkpoint's model card (config, seed, normalisation stats, accuracy, sha256)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model card not found at {path}; run `python -m tlutils.pretrain`")
    return json.loads(path.read_text())


def load_pretrained(path: str | Path | None = None, sha256: str | None = None,
                    map_location: str | torch.device = "cpu") -> ResNet:
    """The bundled backbone pretrained on the source task, with its source head as ``fc``.

    The file's sha256 is checked against the model card (or ``sha256``) before it
    is loaded with ``weights_only=True``. Call ``model.reset_head(k)`` for a target
    task and keep the head it returns to measure forgetting of the source task.
    """
    card = model_card()
    path = Path(path) if path is not None else CHECKPOINT
    expected = sha256 or card["sha256"]
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found at {path}; reinstall tlutils or run `python -m tlutils.pretrain`")
    actual = sha256_of(path)
    if actual != expected:
        raise CheckpointError(
            f"checkpoint {path} has sha256 {actual[:12]}..., expected {expected[:12]}... "
            "(file corrupted or modified); reinstall tlutils or re-run `python -m tlutils.pretrain`")
    state = torch.load(path, map_location=map_location, weights_only=True)
    cfg = card["config"]
    model = ResNet(num_classes=cfg["num_classes"], widths=cfg["widths"])
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {e}") from None
    return model


FIRST_CONV_MODES = ("sum", "copy", "reinit")


def adapt_first_conv(model: ResNet, in_channels: int, mode: str = "sum", seed: int | None = None) -> ResNet:
    """Give ``model`` a first convolution for ``in_channels`` input channels (in place; returns it).

    Built from the pretrained RGB filters ``w`` (out, 3, k, k), so the rest of the network keeps
    receiving the activations it was trained on:

    * ``"sum"``: every new channel gets the sum of the RGB filters divided by ``in_channels``, so the
      filters over all new channels add up to the sum of the RGB ones. For one (greyscale) channel
      this is the sum itself: a grey image then gives exactly the activations the RGB network
      computes for that grey image copied into R, G and B. The plain mean of the RGB filters would
      give activations a third as large as BatchNorm expects.
    * ``"copy"``: new channel ``i`` gets RGB filter ``i % 3`` times ``3 / in_channels`` (e.g. RGB
      plus a fourth channel that starts as a copy of red); for one channel, the red filter times 3.
    * ``"reinit"``: a freshly initialised convolution (Kaiming), as if the stem were trained from scratch.

    The layer stays trainable; ``seed`` fixes the random initialisation of ``"reinit"``.
    """
    if mode not in FIRST_CONV_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(FIRST_CONV_MODES)}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    old = model.conv1
    if old.in_channels != 3 and mode != "reinit":
        raise ValueError(f"mode {mode!r} adapts RGB filters, but conv1 has {old.in_channels} input channels")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    w = old.weight.detach()
    with torch.no_grad():
        if mode == "sum":
            new.weight.copy_(w.sum(1, keepdim=True).expand(-1, in_channels, -1, -1) / in_channels)
        elif mode == "copy":
            new.weight.copy_(w[:, [i % 3 for i in range(in_channels)]] * (3 / in_channels))
    model.conv1 = new.to(w.device)
    return model
