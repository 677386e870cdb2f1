"""``tlutils check``: is this installation ready for the labs? Says what to fix if not."""
from __future__ import annotations

import argparse
import importlib
import platform
import sys

REQUIRED = ("torch", "torchvision", "numpy", "matplotlib", "pandas", "tqdm", "ipywidgets")
OPTIONAL = {"myst_nb": "book", "papermill": "test", "nbval": "test", "otter": "grading"}


def check() -> int:
    """Print a report; return the number of problems found (0: ready)."""
    problems = 0
    print(f"python {sys.version.split()[0]} on {platform.machine()}")
    for name in REQUIRED:
        try:
            mod = importlib.import_module(name)
            print(f"  ok   {name} {getattr(mod, '__version__', '')}")
        except ImportError:
            problems += 1
            print(f"  FIX  {name} is missing: pip install {name}")
    for name, extra in OPTIONAL.items():
        try:
            importlib.import_module(name)
            print(f"  ok   {name} (extra [{extra}])")
        except ImportError:
            print(f"  --   {name} not installed (only needed for: pip install -e '.[{extra}]')")
    if problems:
        return problems
    from .models import CheckpointError, load_pretrained, model_card
    from .train import get_device
    print(f"device: {get_device()}")
    try:
        load_pretrained()
        card = model_card()
        print(f"  ok   bundled checkpoint (sha256 {card['sha256'][:12]}..., "
              f"source accuracy {card['source_test_acc']:.1%})")
    except CheckpointError as e:
        problems += 1
        print(f"  FIX  {e}")
    print("ready for the labs" if not problems else f"{problems} problem(s) to fix")
    return problems


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="tlutils", description="Transfer Learning, hands-on helpers")
    ap.add_argument("command", choices=["check"], help="check: verify this installation")
    ap.parse_args(argv)
    sys.exit(1 if check() else 0)


if __name__ == "__main__":
    main()
