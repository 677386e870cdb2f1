"""The GPU, Colab and Apple paths, tested on a CPU: mixed precision, loss scaling, non-finite
losses, device placement with a (mocked) CUDA machine, and the installed wheel.

No GPU runs these tests: what a GPU would do differently is either exercised on the CPU
(bfloat16 autocast, float16 with a GradScaler) or mocked (``torch.cuda.is_available``).
"""
from __future__ import annotations

import math
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch
from torch import nn

from tlutils import lab, models, monitor, shift, train, world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    return world.load_task("target_a", 16, n_val_per_class=4, seed=0)


def small_model(k: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return models.resnet_small(k)


# --------------------------------------------------------------------------- mixed precision on the CPU

def test_fit_with_amp_on_the_cpu_autocasts_to_bfloat16_and_trains(data):
    model = small_model(data.num_classes)
    dtypes = set()
    model.conv1.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype) if m.training else None)
    h = train.fit(model, data.train, data.val, epochs=2, lr=0.05, amp=True, batch_size=32,
                  device="cpu", progress=False)
    assert dtypes == {torch.bfloat16}, dtypes
    assert h["skipped_steps"] == [0, 0], "bfloat16 needs no loss scaling: nothing is skipped"
    assert all(math.isfinite(v) for v in h["train_loss"]) and h["train_loss"][1] < h["train_loss"][0]
    assert all(p.dtype == torch.float32 for p in model.parameters()), "autocast keeps float32 weights"
    assert train.amp_dtype("cpu") == torch.bfloat16


def test_float16_skipped_steps_are_counted_and_the_gradient_monitor_stays_finite():
    # large head weights: the scaled float16 gradients overflow at the GradScaler's first scales
    ds = world.WorldDataset("target_a", 64, "train")
    model = small_model(10)
    with torch.no_grad():
        model.fc.weight.mul_(10)
    grads = monitor.GradNormMonitor()
    h = train.fit(model, ds, epochs=1, lr=0.01, amp=torch.float16, batch_size=16, callbacks=[grads],
                  device="cpu", progress=False)
    skipped = h["skipped_steps"][0]
    assert 1 <= skipped < 4, h
    assert grads.nonfinite == list(range(skipped)), "the skipped steps are the ones with inf/NaN gradients"
    assert len(grads.steps) == 4 - skipped and all(math.isfinite(v) for v in grads.series("backbone"))
    assert max(grads.series("backbone")) > 0
    assert all(torch.isfinite(p).all() for p in model.parameters()), "a skipped step leaves the weights alone"


def test_amp_takes_only_the_mixed_precision_dtypes(data):
    with pytest.raises(ValueError, match="amp must be"):
        train.fit(small_model(), data.train, epochs=1, lr=0.1, amp=torch.float64, device="cpu", progress=False)


# --------------------------------------------------------------------------- non-finite losses

class NaNAt(torch.utils.data.Dataset):
    """A dataset whose image ``bad`` is all NaN (what a corrupt input or a blow-up looks like)."""

    def __init__(self, base, bad: int) -> None:
        self.base, self.bad = base, bad

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return (torch.full_like(x, float("nan")) if i == self.bad else x), y


def test_a_nonfinite_loss_stops_fit_with_a_clear_message_before_the_weights_change(data):
    model = small_model(data.num_classes)
    bad = NaNAt(data.train, bad=0)
    loader = torch.utils.data.DataLoader(bad, batch_size=16, shuffle=False)   # the NaN image is in step 0
    before = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 0 .*before any update.*stop_on_nonfinite=False"):
        train.fit(model, loader, epochs=1, lr=0.05, device="cpu", progress=False)
    params = dict(model.named_parameters())
    assert all(torch.equal(before[n], p) for n, p in params.items()), "the optimizer must not step with a NaN loss"

    h = train.fit(small_model(data.num_classes), loader, epochs=1, lr=0.05, device="cpu", progress=False,
                  stop_on_nonfinite=False)
    assert len(h) == 1 and math.isnan(h[0]["train_loss"]), "asked to go on, fit trains on"


# --------------------------------------------------------------------------- devices, with CUDA mocked

@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine that says it has CUDA (this torch cannot use it: any .to('cuda') fails)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))


def test_device_choice_cuda_first_and_mps_only_when_asked(monkeypatch, fake_cuda):
    assert train.get_device() == torch.device("cuda")
    assert train.get_device("cpu") == torch.device("cpu") and train.get_device(torch.device("mps")).type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert train.get_device() == torch.device("cpu"), "MPS is never picked by itself"


def test_mixed_precision_dtype_per_gpu_generation(monkeypatch, fake_cuda):
    assert train.amp_dtype("cuda") == torch.float16          # a T4 (Colab): float16 + GradScaler
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    assert train.amp_dtype("cuda") == torch.bfloat16         # Ampere and later: bfloat16
    assert train.amp_dtype("mps") == torch.float16


def test_helpers_use_the_models_own_device_and_never_move_it(fake_cuda, data):
    """With CUDA present, helpers given a CPU model must run on the CPU (before: model.to('cuda'))."""
    model = small_model(data.num_classes).train()
    ev = train.evaluate(model, data.val)
    preds, labels = train.predict(model, data.val)
    feats, _ = shift.extract_features(model, data.val)
    adapted = shift.adabn(model, data.train)
    assert 0 <= ev["acc"] <= 1 and len(preds) == len(labels) == len(feats) == len(data.val)
    assert train.model_device(model).type == "cpu" and train.model_device(adapted).type == "cpu"
    assert model.training, "the caller's train/eval mode is restored"
    assert monitor.prediction_entropy(model, data.val).shape == (len(data.val),)


def test_evaluating_restores_device_and_mode_even_on_error(data):
    model = small_model(data.num_classes).train()
    with pytest.raises(RuntimeError, match="boom"):
        with train.evaluating(model, "cpu"):
            assert not model.training
            raise RuntimeError("boom")
    assert model.training and train.model_device(model).type == "cpu"
    assert train.model_device(nn.ReLU()).type == "cpu"


def test_lab_start_on_a_cuda_machine(fake_cuda, monkeypatch, capsys):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert lab.start("ci", 0, device="cpu") == torch.device("cpu")
    assert torch.backends.cudnn.allow_tf32, "on the CPU nothing is changed"
    assert "float32" in capsys.readouterr().out
    assert lab.start("ci", 0) == torch.device("cuda")
    out = capsys.readouterr().out
    assert "Fake GPU" in out and "float16" in out, out
    assert not torch.backends.cudnn.allow_tf32, "TF32 off: float32 means float32 for the exactness checks"


# --------------------------------------------------------------------------- the installed package

def test_the_wheel_installs_with_its_checkpoint_and_passes_check(tmp_path):
    """What Colab's first cell does: pip-install the package (not the repository) and run the check."""
    src, wheels = tmp_path / "src", tmp_path / "wheels"   # a copy: building writes into the source tree
    shutil.copytree(ROOT / "tlutils", src / "tlutils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(src)], check=True, timeout=300, cwd=tmp_path)
    wheel, = wheels.glob("tlutils-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # reuse this environment's torch & co. by path (a plain path line: its .pth files, such as an
    # editable install of this checkout, are not run)
    (Path(purelib) / "outer.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, timeout=300, cwd=tmp_path)
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import tlutils; print(tlutils.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, env=clean, timeout=120)
    assert str(env_dir) in where.stdout, where.stdout + where.stderr   # the wheel, not this checkout
    r = subprocess.run([str(env_dir / "bin" / "tlutils"), "check"], capture_output=True, text=True,
                       cwd=tmp_path, env={**clean, "TLUTILS_OFFLINE": "1"}, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok   bundled checkpoint" in r.stdout and "ready for the labs" in r.stdout, r.stdout
