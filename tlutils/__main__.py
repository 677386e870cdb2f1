"""``tlutils check``: is this installation ready for the labs? Says what to fix if not.

Checks the Python packages and their versions, the device the labs will use, the bundled
checkpoint's integrity (sha256 against its model card), and whether the real-data track
(``track="imagenet"``) can run here. Exit status 0 means ready for the (offline) labs.
"""
from __future__ import annotations

import argparse
import importlib
import platform
import sys
from pathlib import Path

REQUIRED = {"torch": "2.3", "torchvision": "0.18", "numpy": "1.24", "matplotlib": "3.7",
            "pandas": "2.0", "tqdm": "4.60", "ipywidgets": "7.6"}
"""The oldest versions the labs work with: torch 2.3 is the first with ``torch.amp.GradScaler(device)``,
which ``fit`` uses for float16 mixed precision (e.g. on Colab's T4); torchvision 0.18 is its pair."""
WHY = {"torch": "fit's float16 mixed precision needs torch.amp.GradScaler(device), new in 2.3"}
OPTIONAL = {"myst_nb": "book", "papermill": "test", "nbval": "test", "otter": "grading"}


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def check(checkpoint: str | Path | None = None) -> int:
    """Print a report; return the number of problems found (0: ready)."""
    problems = 0
    print(f"python {sys.version.split()[0]} on {platform.machine()} ({platform.system()})")
    for name, minimum in REQUIRED.items():
        try:
            mod = importlib.import_module(name)
        except ImportError:
            problems += 1
            print(f"  FIX  {name} is missing: pip install '{name}>={minimum}'")
            continue
        version = getattr(mod, "__version__", "0")
        if _version_tuple(version) < _version_tuple(minimum):
            problems += 1
            why = f" ({WHY[name]})" if name in WHY else ""
            pair = f" 'torchvision>={REQUIRED['torchvision']}'" if name == "torch" else ""  # they come in pairs
            print(f"  FIX  {name} {version} is too old{why}: pip install -U '{name}>={minimum}'{pair}")
        else:
            print(f"  ok   {name} {version}")
    for name, extra in OPTIONAL.items():
        try:
            importlib.import_module(name)
            print(f"  ok   {name} (extra [{extra}])")
        except ImportError:
            print(f"  --   {name} not installed (only needed for: pip install -e '.[{extra}]')")
    if problems:
        print(f"{problems} problem(s) to fix before the rest can be checked")
        return problems

    import torch

    from .models import CHECKPOINT, CheckpointError, load_pretrained, model_card
    from .train import amp_dtype, get_device
    device = get_device()
    amp = f"mixed precision ({str(amp_dtype(device)).replace('torch.', '')}) in fit" if device.type == "cuda" \
        else "float32 (fit uses mixed precision on CUDA only)"
    print(f"device: {device}, {amp}, {torch.get_num_threads()} CPU threads")
    try:
        load_pretrained(checkpoint)
        card = model_card()
        print(f"  ok   bundled checkpoint {Path(checkpoint or CHECKPOINT).name} "
              f"(sha256 {card['sha256'][:12]}..., source accuracy {card['source_test_acc']:.1%})")
    except CheckpointError as e:
        problems += 1
        print(f"  FIX  {e}")

    from . import tracks
    missing = tracks.missing_downloads()
    if not missing:
        print("  ok   real-data track: ResNet-18 weights and CIFAR-10 are cached")
    else:
        try:
            tracks.check("imagenet")
            print(f"  ok   real-data track reachable (will download: {', '.join(missing)})")
        except tracks.TrackUnavailable:
            print(f"  --   real-data track (track=\"imagenet\") unavailable: cannot download {', '.join(missing)} "
                  "(offline). The labs' default track=\"world\" needs nothing.")
    print("ready for the labs" if not problems else f"{problems} problem(s) to fix")
    return problems


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="tlutils", description="Transfer Learning, hands-on helpers")
    ap.add_argument("command", choices=["check"], help="check: verify this installation")
    ap.add_argument("--checkpoint", default=None, help="check this checkpoint file instead of the bundled one")
    args = ap.parse_args(argv)
    sys.exit(1 if check(args.checkpoint) else 0)


if __name__ == "__main__":
    main()
