"""The offline image world: seeded, procedural 32x32 RGB images.

Every image is a shape filled with a texture on a background, with random
position, size, rotation and colours. A *class* is a (shape, texture) pair.
The pairs are split so that the source task (the "ImageNet" of this course)
and the related target tasks share every primitive but never a class:

* ``source``: 60 (shape, texture) pairs, used to pretrain the bundled backbone;
* ``target_a`` / ``target_b``: 10 pairs each that the source never saw;
* ``dissimilar``: 10 "constellations" of small squares, a spatial-layout task
  that none of the source classes needs;
* ``orientation``: 8 classes, the orientation of a textured bar (in 22.5 degree bins).
  The source task is rotation-invariant (every image is randomly rotated), so the
  pretrained backbone's late blocks learn to discard exactly what this task needs,
  while its early, edge-detecting blocks keep it.

Shifts (:data:`SHIFTS`) corrupt images with a severity knob from 1 to 5.
Generation is vectorised with NumPy: tens of thousands of images per second.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_SIZE = 32

SHAPES = ("disk", "square", "triangle", "ring", "cross",
          "bar", "semicircle", "star", "crescent", "ell")
TEXTURES = ("solid", "stripes", "checker", "dots",
            "rings", "grid", "waves", "speckle")

# Target classes pair look-alike textures (checker/grid, stripes/waves) on shared
# shapes, so a target class is told apart by the same cues the source taught.
TARGET_A = [(s, t) for s in range(5) for t in (2, 5)]
TARGET_B = [(s, t) for s in range(5, 10) for t in (1, 6)]
SOURCE = [(s, t) for s in range(len(SHAPES)) for t in range(len(TEXTURES))
          if (s, t) not in TARGET_A and (s, t) not in TARGET_B]

# Ten constellations of three cells on a 4x4 grid (row, col).
CONSTELLATIONS = [
    ((0, 0), (1, 1), (2, 2)), ((0, 3), (1, 2), (2, 1)), ((0, 0), (0, 1), (0, 2)),
    ((3, 0), (3, 1), (3, 2)), ((0, 0), (1, 0), (2, 0)), ((0, 3), (1, 3), (2, 3)),
    ((0, 0), (0, 3), (3, 0)), ((0, 3), (3, 3), (3, 0)), ((1, 1), (1, 2), (2, 1)),
    ((0, 1), (2, 0), (2, 2)),
]

TASKS = ("source", "target_a", "target_b", "dissimilar", "orientation")

ORIENTATION_BINS = 8
"""Classes of the ``orientation`` task: equal bins of the bar's angle over 180 degrees."""

_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


def task_classes(task: str) -> list[str]:
    """Human-readable class names of ``task``."""
    _check_task(task)
    if task == "dissimilar":
        return [f"constellation{i}" for i in range(len(CONSTELLATIONS))]
    if task == "orientation":
        width = 180 / ORIENTATION_BINS
        return [f"bar@{(c + 0.5) * width:.0f}deg" for c in range(ORIENTATION_BINS)]
    pairs = {"source": SOURCE, "target_a": TARGET_A, "target_b": TARGET_B}[task]
    return [f"{SHAPES[s]}/{TEXTURES[t]}" for s, t in pairs]


def num_classes(task: str) -> int:
    """Number of classes of ``task``."""
    return len(task_classes(task))


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


# --------------------------------------------------------------------------- rendering

_lin = (np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5) / IMAGE_SIZE * 2 - 1
_Y, _X = np.meshgrid(_lin, _lin, indexing="ij")  # (H, W), in [-1, 1]


def _shape_sdf(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (negative inside) of a unit-sized shape."""
    r = np.sqrt(u * u + v * v)
    if shape == 0:  # disk
        return r - 0.9
    if shape == 1:  # square
        return np.maximum(np.abs(u), np.abs(v)) - 0.75
    if shape == 2:  # triangle
        return np.maximum.reduce([-v - 0.5, 0.866 * u + 0.5 * v - 0.45, -0.866 * u + 0.5 * v - 0.45])
    if shape == 3:  # ring
        return np.abs(r - 0.7) - 0.22
    if shape == 4:  # cross
        a = np.maximum(np.abs(u) - 0.28, np.abs(v) - 0.95)
        b = np.maximum(np.abs(v) - 0.28, np.abs(u) - 0.95)
        return np.minimum(a, b)
    if shape == 5:  # bar
        return np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.35)
    if shape == 6:  # semicircle (a diamond would be a rotated square)
        return np.maximum(r - 0.95, -v - 0.25)
    if shape == 7:  # star (five points)
        phi = np.arctan2(v, u)
        return r - (0.6 + 0.35 * np.cos(5 * phi))
    if shape == 8:  # crescent
        return np.maximum(r - 0.9, 0.7 - np.sqrt((u - 0.45) ** 2 + v * v))
    if shape == 9:  # ell
        a = np.maximum(np.abs(u + 0.55) - 0.3, np.abs(v) - 0.9)
        b = np.maximum(np.abs(v - 0.6) - 0.3, np.abs(u) - 0.85)
        return np.minimum(a, b)
    raise ValueError(shape)


def _texture(tex: int, u: np.ndarray, v: np.ndarray, phase: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Texture intensity in [0, 1], in the shape's own frame (it rotates with it)."""
    f = 2 * np.pi * 2.2
    if tex == 0:  # solid
        return np.ones_like(u)
    if tex == 1:  # stripes
        return (np.sin(f * u + phase) > 0).astype(np.float32)
    if tex == 2:  # checker
        return ((np.sin(f * u + phase) > 0) ^ (np.sin(f * v + phase) > 0)).astype(np.float32)
    if tex == 3:  # dots
        return ((np.cos(f * u + phase) + np.cos(f * v + phase)) > 0.9).astype(np.float32)
    if tex == 4:  # concentric rings
        return (np.sin(f * np.sqrt(u * u + v * v) + phase) > 0).astype(np.float32)
    if tex == 5:  # grid lines
        return ((np.cos(f * u + phase) > 0.6) | (np.cos(f * v + phase) > 0.6)).astype(np.float32)
    if tex == 6:  # waves
        return (np.sin(f * u + 2.0 * np.sin(2.5 * v) + phase) > 0).astype(np.float32)
    if tex == 7:  # speckle
        return (rng.random(u.shape, dtype=np.float32) > 0.5).astype(np.float32)
    raise ValueError(tex)


def _random_colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background colours with guaranteed luminance contrast."""
    fg = rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32)
    bg = rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32)
    light_fg = rng.random(n) < 0.5
    fg = np.where(light_fg[:, None], 0.55 + 0.45 * fg, 0.45 * fg)
    bg = np.where(light_fg[:, None], 0.35 * bg, 0.6 + 0.4 * bg)
    return fg, bg


def _render_pairs(pairs: np.ndarray, rng: np.random.Generator,
                  theta: np.ndarray | None = None) -> np.ndarray:
    """Render (shape, texture) pairs of shape (n, 2) into (n, 3, H, W) floats in [0, 1].

    ``theta`` (n,) fixes the rotations (radians); the random draw still happens, so the
    other attributes of an image do not depend on whether its rotation was given.
    """
    n = len(pairs)
    cx, cy = rng.uniform(-0.25, 0.25, (2, n, 1, 1)).astype(np.float32)
    scale = rng.uniform(0.5, 0.8, (n, 1, 1)).astype(np.float32)
    theta_drawn = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    theta = theta_drawn if theta is None else np.asarray(theta, np.float32).reshape(n, 1, 1)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    dx, dy = _X[None] - cx, _Y[None] - cy
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / scale
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / scale

    mask = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    pattern = np.empty_like(mask)
    for s in np.unique(pairs[:, 0]):
        idx = np.nonzero(pairs[:, 0] == s)[0]
        # soft edge of about one pixel, for anti-aliasing
        d = _shape_sdf(int(s), u[idx], v[idx]) * scale[idx] * (IMAGE_SIZE / 2)
        mask[idx] = np.clip(0.5 - d, 0.0, 1.0)
    for t in np.unique(pairs[:, 1]):
        idx = np.nonzero(pairs[:, 1] == t)[0]
        pattern[idx] = _texture(int(t), u[idx], v[idx], phase[idx], rng)

    fg, bg = _random_colours(rng, n)
    fg_pix = fg[:, :, None, None] * (0.35 + 0.65 * pattern[:, None])
    img = mask[:, None] * fg_pix + (1 - mask[:, None]) * bg[:, :, None, None]
    return img


def _render_constellations(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Three small squares on a jittered 4x4 grid; the layout is the class."""
    n = len(labels)
    fg, bg = _random_colours(rng, n)
    img = np.broadcast_to(bg[:, :, None, None], (n, 3, IMAGE_SIZE, IMAGE_SIZE)).copy()
    cell = IMAGE_SIZE // 4
    ox, oy = rng.integers(-1, 2, (2, n))
    for c, layout in enumerate(CONSTELLATIONS):
        idx = np.nonzero(labels == c)[0]
        for (row, col) in layout:
            for i in idx:
                y0 = int(np.clip(row * cell + 1 + oy[i], 0, IMAGE_SIZE - 6))
                x0 = int(np.clip(col * cell + 1 + ox[i], 0, IMAGE_SIZE - 6))
                img[i, :, y0:y0 + 6, x0:x0 + 6] = fg[i, :, None, None]
    return img


def _render_orientations(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bar with a random source texture, rotated into the angle bin of its label.

    Angles are jittered within the middle 60% of each bin, so neighbouring classes
    stay at least 9 degrees apart. A bar looks the same after a half turn, hence 180 degrees.
    """
    n = len(labels)
    texture = rng.integers(0, len(TEXTURES), n)
    jitter = rng.uniform(-0.3, 0.3, n)
    theta = (labels + 0.5 + jitter) / ORIENTATION_BINS * np.pi
    pairs = np.stack([np.full(n, SHAPES.index("bar")), texture], 1)
    return _render_pairs(pairs, rng, theta=theta)


def make_images(task: str, n: int, seed: int = 0, split: str = "train",
                labels: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``n`` images of ``task``.

    Returns ``(images, labels)``: float32 images in [0, 1] of shape (n, 3, 32, 32) and
    int64 labels. Classes are balanced (round-robin, then shuffled). The same
    ``(task, n, seed, split)`` always gives the same images; different splits are
    drawn from independent random streams, so ``val`` never repeats ``train``.
    """
    _check_task(task)
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(_SPLIT_OFFSET)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng([seed, TASKS.index(task), _SPLIT_OFFSET[split]])
    k = num_classes(task)
    if labels is None:
        y = rng.permutation(np.arange(n) % k)
    else:
        y = np.asarray(labels, dtype=np.int64)
        if len(y) != n or (len(y) and (y.min() < 0 or y.max() >= k)):
            raise ValueError(f"labels must be {n} ints in [0, {k})")
    if task == "dissimilar":
        x = _render_constellations(y, rng)
    elif task == "orientation":
        x = _render_orientations(y, rng) if n else np.zeros((0, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    else:
        pairs = np.asarray({"source": SOURCE, "target_a": TARGET_A, "target_b": TARGET_B}[task])
        x = _render_pairs(pairs[y], rng) if n else np.zeros((0, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    # mild sensor noise so that no two images are pixel-identical
    x = x + 0.03 * rng.standard_normal(x.shape, dtype=np.float32)
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


# --------------------------------------------------------------------------- shifts

def _blur(x: torch.Tensor, s: int) -> torch.Tensor:
    sigma = 0.4 * s
    r = int(np.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _grey(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _shift_contrast(x, s, g):
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * (1 - 0.17 * s)


def _shift_brightness(x, s, g):
    return x + 0.12 * s


def _shift_noise(x, s, g):
    return x + torch.randn(x.shape, generator=g) * (0.06 * s)


def _shift_blur(x, s, g):
    return _blur(x, s)


def _shift_colour(x, s, g):
    # desaturate toward grey and tint: a camera with a different colour response
    a = 0.18 * s
    tint = torch.tensor([1.0 + 0.1 * s, 1.0, 1.0 - 0.1 * s]).view(1, 3, 1, 1)
    return ((1 - a) * x + a * _grey(x)) * tint


def _shift_texture(x, s, g):
    # a high-frequency overlay pattern: a change of "style", not of content
    lin = torch.arange(IMAGE_SIZE, dtype=x.dtype)
    pattern = torch.sin(lin.view(-1, 1) * 1.9 + lin.view(1, -1) * 0.7) * torch.cos(lin.view(1, -1) * 1.3)
    return x + 0.07 * s * pattern


SHIFTS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    "contrast": _shift_contrast,
    "brightness": _shift_brightness,
    "noise": _shift_noise,
    "blur": _shift_blur,
    "colour": _shift_colour,
    "texture": _shift_texture,
}


def apply_shift(images: torch.Tensor, kind: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Return a shifted copy of ``images`` (in [0, 1]); ``severity`` 0 is the identity, 1..5 grow."""
    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; choose one of {', '.join(SHIFTS)}")
    if not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise ValueError(f"severity must be an int from 0 to 5, got {severity!r}")
    if severity == 0:
        return images.clone()
    g = torch.Generator().manual_seed(seed)
    return SHIFTS[kind](images, int(severity), g).clamp(0.0, 1.0)


def to_greyscale(images: torch.Tensor) -> torch.Tensor:
    """Convert (n, 3, H, W) RGB images to (n, 1, H, W) luminance."""
    return _grey(images)


# --------------------------------------------------------------------------- datasets

# Per-channel statistics of the source task, fixed so that every lab normalises
# inputs exactly as the pretrained backbone saw them (values in the model card).
SOURCE_MEAN = (0.460, 0.460, 0.460)
SOURCE_STD = (0.322, 0.322, 0.322)


def normalize(images: torch.Tensor, mean: Sequence[float] = SOURCE_MEAN,
              std: Sequence[float] = SOURCE_STD) -> torch.Tensor:
    """Standardise (n, C, H, W) images channel-wise (default: the source statistics)."""
    c = images.shape[1]
    m = torch.as_tensor(mean, dtype=images.dtype)[:c].view(1, c, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype)[:c].view(1, c, 1, 1)
    return (images - m) / s


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of (n, C, H, W) images."""
    return (tuple(images.mean(dim=(0, 2, 3)).tolist()), tuple(images.std(dim=(0, 2, 3)).tolist()))


class WorldDataset(Dataset):
    """A generated split of one task, normalised with the source statistics.

    Behaves like a torchvision dataset: ``ds[i]`` is ``(image, label)``, ``ds.classes``
    names the classes. Images are generated once, in memory, at construction.

    Args:
        task: ``"source"``, ``"target_a"``, ``"target_b"``, ``"dissimilar"`` or ``"orientation"``.
        n: number of images (balanced over classes).
        split: ``"train"``, ``"val"`` or ``"test"``; independent random streams.
        seed: world seed.
        shift: optional ``(kind, severity)`` applied before normalisation.
        transform: optional callable applied to each normalised image tensor.
    """

    def __init__(self, task: str, n: int, split: str = "train", seed: int = 0,
                 shift: tuple[str, int] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 mean: Sequence[float] = SOURCE_MEAN, std: Sequence[float] = SOURCE_STD):
        raw, self.targets = make_images(task, n, seed=seed, split=split)
        if shift is not None:
            raw = apply_shift(raw, shift[0], shift[1], seed=seed)
        self.raw = raw
        self.data = normalize(raw, mean, std)
        self.task, self.split, self.transform = task, split, transform
        self.classes = task_classes(task)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.data[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[i])


@dataclass
class TaskData:
    """Train and validation splits of one task, ready for a DataLoader."""
    train: WorldDataset
    val: WorldDataset

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)


def load_task(task: str, n_per_class: int, n_val_per_class: int = 100, seed: int = 0,
              shift: tuple[str, int] | None = None) -> TaskData:
    """Train/val splits with ``n_per_class`` training and ``n_val_per_class`` validation images per class."""
    k = num_classes(task)
    if n_per_class < 1 or n_val_per_class < 1:
        raise ValueError("n_per_class and n_val_per_class must be >= 1")
    return TaskData(WorldDataset(task, k * n_per_class, "train", seed, shift),
                    WorldDataset(task, k * n_val_per_class, "val", seed, shift))


# --------------------------------------------------------------------------- subsets and augmentation

def take_per_class(data: WorldDataset, counts: Sequence[int]) -> WorldDataset:
    """A copy of ``data`` with only the first ``counts[c]`` images of each class ``c``.

    Builds skewed (imbalanced) training sets from a balanced one, e.g.
    ``take_per_class(ds, [100] * 5 + [5] * 5)``. Order within the dataset is kept.
    """
    import copy

    k = len(data.classes)
    if len(counts) != k or any(int(c) < 0 for c in counts):
        raise ValueError(f"counts must give a non-negative count for each of the {k} classes")
    keep = []
    for c in range(k):
        idx = torch.nonzero(data.targets == c).flatten()
        if len(idx) < counts[c]:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than the {counts[c]} asked for")
        keep.append(idx[:int(counts[c])])
    order = torch.cat(keep).sort().values
    out = copy.copy(data)
    out.raw, out.data, out.targets = data.raw[order], data.data[order], data.targets[order]
    return out


class FlipShift:
    """Augmentation that keeps images looking like the pretraining images: a random
    horizontal flip and a random translation of up to ``max_shift`` pixels (reflected border).

    Use as ``WorldDataset(..., transform=FlipShift())``; it acts on one normalised (C, H, W)
    image and draws from torch's global generator (seeded by ``tlutils.lab.start``).
    """

    def __init__(self, max_shift: int = 3, flip: bool = True) -> None:
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift, self.flip = int(max_shift), flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        s = self.max_shift
        if s:
            dy, dx = (int(v) for v in torch.randint(-s, s + 1, (2,)))
            h, w = x.shape[-2:]
            x = torch.nn.functional.pad(x[None], (s, s, s, s), mode="reflect")[0]
            x = x[:, s + dy:s + dy + h, s + dx:s + dx + w]
        return x

    def __repr__(self) -> str:
        return f"FlipShift(max_shift={self.max_shift}, flip={self.flip})"


class Blur:
    """A Gaussian blur of every image (the shift ``blur`` at ``severity``) as an augmentation.

    It removes fine texture. When the texture *is* what tells the classes apart, this
    "augmentation" destroys the signal: a cautionary example, not a recipe.
    """

    def __init__(self, severity: int = 4) -> None:
        if not 1 <= int(severity) <= 5:
            raise ValueError(f"severity must be an int from 1 to 5, got {severity!r}")
        self.severity = int(severity)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _blur(x[None], self.severity)[0]

    def __repr__(self) -> str:
        return f"Blur(severity={self.severity})"
