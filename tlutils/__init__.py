"""tlutils: the shared code of the course *Transfer Learning, hands-on*.

Modules, one concept each:

* :mod:`tlutils.world`   the offline, seeded image world (tasks, shifts, datasets)
* :mod:`tlutils.models`  the small ResNet and the bundled pretrained checkpoint
* :mod:`tlutils.train`   ``fit`` / ``evaluate``, schedules, callbacks, L2-SP
* :mod:`tlutils.freeze`  freezing, BatchNorm and learning-rate-group helpers
* :mod:`tlutils.monitor` gradient norms, weight drift, BN statistics, forgetting
* :mod:`tlutils.finetune` fine-tuning recipes and replicated runs (sweeps, ablations)
* :mod:`tlutils.parallel` independent runs in single-thread worker processes
* :mod:`tlutils.shift`   features, linear probe, MMD, CKA, AdaBN
* :mod:`tlutils.strategies` feature extraction / fine-tuning / scratch, and the measured decision matrix
* :mod:`tlutils.hierarchy` transfer the first k blocks, frozen or fine-tuned (Yosinski et al.)
* :mod:`tlutils.plots`   the labs' figures
* :mod:`tlutils.explore` interactive explorers (ipywidgets) with a static view for the book
* :mod:`tlutils.tracks`  the offline world track and the real-data (ImageNet ResNet-18) track
* :mod:`tlutils.lab`     the notebook contract (profiles, seeds, device, recorded numbers)
* :mod:`tlutils.grading` graded exercises: student editions, autograders, grade sheets

Modules load on first use, so ``python -m tlutils check`` can report a missing dependency
instead of failing to import.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODULES = ("world", "models", "train", "freeze", "monitor", "shift", "plots", "explore", "tracks", "hierarchy",
            "strategies", "lab", "grading", "finetune", "parallel")
_SHORTCUTS = {"fit": "train", "evaluate": "train", "get_device": "train", "load_pretrained": "models",
              "resnet_small": "models", "freeze_bn": "freeze", "unfreeze_bn": "freeze"}

__all__ = [*_MODULES, *_SHORTCUTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _SHORTCUTS:
        return getattr(importlib.import_module(f".{_SHORTCUTS[name]}", __name__), name)
    raise AttributeError(f"module 'tlutils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
