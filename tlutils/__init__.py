"""tlutils: the shared code of the course *Transfer Learning, hands-on*.

Modules, one concept each:

* :mod:`tlutils.world`   the offline, seeded image world (tasks, shifts, datasets)
* :mod:`tlutils.models`  the small ResNet and the bundled pretrained checkpoint
* :mod:`tlutils.train`   ``fit`` / ``evaluate``, schedules, callbacks, L2-SP
* :mod:`tlutils.freeze`  freezing, BatchNorm and learning-rate-group helpers
* :mod:`tlutils.monitor` gradient norms, weight drift, BN statistics, forgetting
* :mod:`tlutils.shift`   features, linear probe, MMD, CKA, AdaBN
* :mod:`tlutils.plots`   the labs' figures
* :mod:`tlutils.lab`     the notebook contract (profiles, seeds, device, recorded numbers)
"""
from . import freeze, lab, models, monitor, shift, train, world
from .freeze import freeze_bn, unfreeze_bn
from .models import load_pretrained, resnet_small
from .train import evaluate, fit, get_device

__version__ = "0.1.0"

__all__ = ["world", "models", "train", "freeze", "monitor", "shift", "lab",
           "fit", "evaluate", "get_device", "load_pretrained", "resnet_small",
           "freeze_bn", "unfreeze_bn", "__version__"]
