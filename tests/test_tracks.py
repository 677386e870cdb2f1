"""The real-data track, offline: it fails fast with a clear message, and its loading code works
from a local state dict and a small image folder made here."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from tlutils import freeze, models, monitor, tracks


@pytest.fixture
def offline(monkeypatch, tmp_path_factory):
    """No network and nothing cached, whatever this machine has (also for kernels started here)."""
    empty = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TLUTILS_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(empty / "torch"))
    monkeypatch.setenv("HOME", str(empty))


def test_unknown_track_is_refused():
    with pytest.raises(ValueError, match="unknown track 'imagnet'.*'world'"):
        tracks.check("imagnet")


def test_offline_real_track_stops_at_once_naming_the_parameter(offline, tmp_path):
    t = time.perf_counter()
    with pytest.raises(tracks.TrackUnavailable) as e:
        tracks.check("imagenet", root=tmp_path)
    assert time.perf_counter() - t < 1
    msg = str(e.value)
    assert 'track = "world"' in msg and "ResNet-18" in msg and "CIFAR-10" in msg, msg
    with pytest.raises(tracks.TrackUnavailable):
        tracks.imagenet_resnet18()
    with pytest.raises(tracks.TrackUnavailable, match="CIFAR-10"):
        tracks.load_target("imagenet", "target_a", 2, 2, root=tmp_path)
    assert tracks.check("world") == "world"


def test_unreachable_host_is_detected_quickly():
    t = time.perf_counter()
    assert not tracks._reachable("no-such-host.invalid", timeout=2)
    assert time.perf_counter() - t < 5


def _image_folder(root, sizes=((300, 260), (260, 300), (320, 320))):
    """Two classes; each image has a red centre (what centre-cropping must keep) on blue."""
    for split in ("train", "val"):
        for c, cls in enumerate(("cats", "dogs")):
            (root / split / cls).mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                a = np.zeros((h, w, 3), np.uint8)
                a[..., 2] = 255
                a[h // 2 - 40:h // 2 + 40, w // 2 - 40:w // 2 + 40] = (255, 0, 30 * c)
                Image.fromarray(a).save(root / split / cls / f"{i}.png")


def test_real_track_loads_a_local_state_dict_and_an_image_folder(offline, tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = tracks.load_backbone("imagenet", weights_path=path).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)
        assert model.forward_features(x).shape == (2, 512)

    _image_folder(tmp_path / "photos")
    data = tracks.load_target("imagenet", "ignored", 3, 2, image_root=tmp_path / "photos")
    assert data.train.classes == ["cats", "dogs"] and data.num_classes == 2
    assert len(data.train) == 6 and len(data.val) == 4
    assert data.train.raw.shape == (6, 3, 224, 224)
    # the preprocessing the ImageNet weights expect: centre crop (red centre kept), ImageNet mean/std
    raw = data.train.raw[0]
    assert raw[0, 112, 112] == 1.0 and raw[2, 112, 112] < 0.2 and raw[2, 0, 0] == 1.0
    x0, y0 = data.train[0]
    mean, std = torch.tensor(tracks.IMAGENET_MEAN).view(3, 1, 1), torch.tensor(tracks.IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(x0 * std + mean, raw, atol=1e-6) and y0 == 0

    # the course's helpers work on it: a new head, freezing, forgetting through the source head
    source = tracks.source_eval_set("imagenet", 4, model=model, images=data.val)
    assert monitor.source_accuracy(model, model.fc, source) == 1.0
    source_head = model.reset_head(data.num_classes, seed=0)
    assert source_head.out_features == 1000 and model.fc.out_features == 2
    freeze.freeze(model)
    assert freeze.trainable_blocks(model) == ["fc"]


def test_a_wrong_state_dict_is_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no state dict"):
        tracks.load_backbone("imagenet", weights_path=tmp_path / "missing.pth")
    with pytest.raises(models.CheckpointError, match="not a torchvision ResNet-18"):
        tracks.load_backbone("imagenet", weights_path=models.CHECKPOINT)


@pytest.mark.notebook
def test_lab_with_the_real_data_parameter_stops_at_once_offline(offline, tmp_path):
    import papermill as pm
    from notebooks import LABS

    t = time.perf_counter()
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(LABS / "forgetting.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"profile": "ci", "track": "imagenet"}, kernel_name="python3",
                            progress_bar=False)
    assert e.value.ename == "TrackUnavailable"
    assert 'track = "world"' in e.value.evalue, e.value.evalue
    assert time.perf_counter() - t < 60, "the lab should stop before any training"


def test_weights_download_creates_the_hub_folder_and_verifies_the_file(offline, tmp_path, monkeypatch):
    """What a fresh Colab VM does on track="imagenet": no torch hub folder yet, weights from a URL."""
    import hashlib

    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    served = tmp_path / "served"
    served.mkdir()
    blob = served / "blob.pth"
    torch.save(reference.state_dict(), blob)
    prefix = hashlib.sha256(blob.read_bytes()).hexdigest()[:8]
    good = served / f"resnet18-{prefix}.pth"
    blob.rename(good)
    monkeypatch.setattr(tracks, "_reachable", lambda host, timeout=3.0: True)
    monkeypatch.setattr(tracks, "weights_url", lambda: good.as_uri())
    cache = tracks.weights_file()
    assert not cache.parent.exists(), "the test needs the hub's checkpoints/ folder to be missing"
    model = tracks.imagenet_resnet18().eval()
    assert cache.is_file() and cache.name == good.name
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)

    # a file whose content does not match the prefix its name carries is refused and not cached
    bad = served / "resnet18-0123abcd.pth"
    bad.write_bytes(good.read_bytes())
    with pytest.raises(RuntimeError, match="hash"):
        tracks.download(bad.as_uri(), tmp_path / "fresh" / "checkpoints" / bad.name)
    assert not (tmp_path / "fresh" / "checkpoints" / bad.name).exists()
    with pytest.raises(ValueError, match="sha256 prefix"):
        tracks.download((served / "blob.pth").as_uri(), tmp_path / "x.pth")
