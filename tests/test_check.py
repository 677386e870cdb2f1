"""`tlutils check` says what to fix: a tampered checkpoint, a missing dependency."""
from __future__ import annotations

import shutil
import subprocess
import sys

from tlutils import models


def run_check(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}\nfrom tlutils.__main__ import main\nmain(['check', *{list(args)!r}])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_good_installation_is_ready():
    r = run_check()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok   bundled checkpoint" in r.stdout and "device:" in r.stdout and "ready for the labs" in r.stdout
    assert "real-data track" in r.stdout


def test_a_tampered_checkpoint_is_reported(tmp_path):
    bad = tmp_path / "resnet_source.pt"
    shutil.copy(models.CHECKPOINT, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    r = run_check("--checkpoint", str(bad))
    assert r.returncode == 1, r.stdout
    assert "FIX" in r.stdout and "sha256" in r.stdout and "modified" in r.stdout, r.stdout
    assert "1 problem(s) to fix" in r.stdout


def test_a_missing_checkpoint_is_reported(tmp_path):
    r = run_check("--checkpoint", str(tmp_path / "nothing.pt"))
    assert r.returncode == 1 and "FIX  checkpoint not found" in r.stdout, r.stdout


def test_a_missing_dependency_is_reported():
    # None in sys.modules makes `import tqdm` fail as if tqdm were not installed
    r = run_check(prelude="import sys; sys.modules['tqdm'] = None")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FIX  tqdm is missing: pip install 'tqdm>=" in r.stdout, r.stdout
    assert "Traceback" not in r.stderr, r.stderr


def test_a_torch_below_the_floor_is_refused_with_what_to_install(monkeypatch, capsys):
    import torch

    from tlutils.__main__ import check

    monkeypatch.setattr(torch, "__version__", "2.2.2+cu121")
    assert check() == 1
    out = capsys.readouterr().out
    assert "FIX  torch 2.2.2+cu121 is too old" in out and "GradScaler" in out, out
    assert "pip install -U 'torch>=2.3' 'torchvision>=0.18'" in out, out
    monkeypatch.setattr(torch, "__version__", "2.3.0")
    assert check() == 0 and "ok   torch 2.3.0" in capsys.readouterr().out
