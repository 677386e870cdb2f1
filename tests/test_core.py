"""Unit tests of tlutils: each one can fail, and each names the property it guards."""
import copy
import time

import pytest
import torch
from torch import nn

import tlutils
from tlutils import freeze, models, monitor, shift, train, world


def tiny_data(task="target_a", n_per_class=8, seed=0):
    return world.load_task(task, n_per_class, n_val_per_class=4, seed=seed)


# --------------------------------------------------------------------------- world

def test_same_seed_same_images_different_seed_or_split_different():
    a, ya = world.make_images("source", 50, seed=3)
    b, yb = world.make_images("source", 50, seed=3)
    c, _ = world.make_images("source", 50, seed=4)
    d, _ = world.make_images("source", 50, seed=3, split="val")
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, c) and not torch.equal(a, d)


def test_task_structure():
    assert world.num_classes("source") >= 40
    src, ta, tb = set(world.SOURCE), set(world.TARGET_A), set(world.TARGET_B)
    assert not (src & ta) and not (src & tb) and not (ta & tb)
    # every primitive of the targets appears in the source
    for pairs in (ta, tb):
        assert {s for s, _ in pairs} <= {s for s, _ in src}
        assert {t for _, t in pairs} <= {t for _, t in src}
    x, y = world.make_images("dissimilar", 20)
    assert x.shape == (20, 3, 32, 32) and x.min() >= 0 and x.max() <= 1
    assert torch.bincount(y).tolist() == [2] * 10


def test_generation_speed():
    world.make_images("source", 200)  # warm-up
    t = time.process_time()  # CPU time: make test runs other jobs beside this one
    x, _ = world.make_images("source", 10_000, seed=1)
    assert len(x) == 10_000
    assert time.process_time() - t < 5.0


@pytest.mark.parametrize("kind", list(world.SHIFTS))
def test_shifts_grow_with_severity(kind):
    x, _ = world.make_images("target_a", 40)
    dists = [float((world.apply_shift(x, kind, s) - x).abs().mean()) for s in range(6)]
    assert dists[0] == 0
    assert all(b > a for a, b in zip(dists, dists[1:])), dists


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown task 'imagenet'"):
        world.make_images("imagenet", 10)
    with pytest.raises(ValueError, match="unknown shift 'fog'"):
        world.apply_shift(torch.zeros(1, 3, 32, 32), "fog", 1)
    with pytest.raises(ValueError, match="severity must be"):
        world.apply_shift(torch.zeros(1, 3, 32, 32), "noise", 6)
    m = models.resnet_small(10)
    d = tiny_data()
    with pytest.raises(ValueError, match="lr must be a positive"):
        train.fit(m, d.train, epochs=1, lr=-0.1, progress=False)
    with pytest.raises(ValueError, match="unknown schedule"):
        train.fit(m, d.train, epochs=1, lr=0.1, schedule="step", progress=False)
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        tlutils.lab.start("fast")


# --------------------------------------------------------------------------- models and checkpoint

def test_resnet_has_torchvision_names():
    m = models.resnet_small(7)
    for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"):
        assert hasattr(m, name)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    old = m.reset_head(4)
    assert old.out_features == 7 and m.fc.out_features == 4


def test_pretrained_checkpoint_is_small_and_documented():
    card = models.model_card()
    assert models.CHECKPOINT.stat().st_size <= 5 * 2**20
    assert card["sha256"] == models.sha256_of(models.CHECKPOINT)
    assert list(card["normalization"]["mean"]) == list(world.SOURCE_MEAN)
    assert list(card["normalization"]["std"]) == list(world.SOURCE_STD)
    for key in ("config", "source_val_acc", "train_time_s"):
        assert key in card


def test_pretrained_accuracy_on_fresh_split():
    """>= 90% source accuracy on images generated with a seed training never used."""
    model = models.load_pretrained()
    fresh = world.WorldDataset("source", 60 * 20, split="test", seed=12345)
    assert train.evaluate(model, fresh)["acc"] >= 0.90


def test_inference_batch_size_cannot_change_a_prediction():
    """The CPU's small inference batches (:func:`train.inference_batch_size`) give the predictions
    of one large batch, bit for bit."""
    model = models.load_pretrained()
    data = world.WorldDataset("source", 300, split="val", seed=7)
    assert train.inference_batch_size("cpu") < len(data) < 512
    default, _ = train.map_batches(model, data, model)
    (one_batch,), _ = train.map_batches(model, data, model, batch_size=512)
    assert torch.equal(torch.cat(default), one_batch)


def test_tampered_or_missing_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "w.pt"
    data = bytearray(models.CHECKPOINT.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(models.CheckpointError, match="sha256"):
        models.load_pretrained(bad)
    with pytest.raises(models.CheckpointError, match="not found"):
        models.load_pretrained(tmp_path / "missing.pt")


# --------------------------------------------------------------------------- freezing and BN

def test_frozen_parameters_stay_bit_identical():
    m = models.load_pretrained()
    m.reset_head(10, seed=0)
    freeze.freeze(m)  # backbone
    before = copy.deepcopy(m.state_dict())
    train.fit(m, tiny_data().train, epochs=2, lr=0.1, progress=False)
    for name, p in m.named_parameters():
        if name.startswith("fc."):
            assert not torch.equal(p, before[name]), "the head should train"
        else:
            assert torch.equal(p, before[name]), name


def test_freeze_bn_survives_train_and_keeps_running_stats():
    m = models.load_pretrained()
    m.reset_head(10, seed=0)
    freeze.freeze(m)
    freeze.freeze_bn(m)
    m.train()
    assert all(not bn.training for _, bn in freeze.bn_layers(m))
    ref = monitor.snapshot(m)
    train.fit(m, tiny_data().train, epochs=2, lr=0.1, progress=False)
    assert all(v == 0 for v in monitor.bn_stat_drift(m, ref).values())
    # and without the helper the running statistics do move (the pitfall)
    m2 = models.load_pretrained()
    m2.reset_head(10, seed=0)
    freeze.freeze(m2)
    train.fit(m2, tiny_data().train, epochs=1, lr=0.1, progress=False)
    assert max(monitor.bn_stat_drift(m2, ref).values()) > 0
    freeze.unfreeze_bn(m)
    m.train()
    assert all(bn.training for _, bn in freeze.bn_layers(m))


def test_discriminative_groups_and_gradual_unfreezing():
    m = models.resnet_small(10)
    freeze.freeze_to(m, 4)  # layer4 and fc trainable
    assert freeze.trainable_blocks(m) == ["layer4", "fc"]
    groups = freeze.discriminative_groups(m, head_lr=0.1, factor=10)
    assert [g["name"] for g in groups] == ["fc", "layer4"]
    assert groups[0]["lr"] == pytest.approx(0.1) and groups[1]["lr"] == pytest.approx(0.01)
    freeze.unfreeze(m)
    g = freeze.discriminative_groups(m, 1.0, factor=10, decay=2.6)
    lrs = {x["name"]: x["lr"] for x in g}
    assert lrs["layer3"] == pytest.approx(lrs["layer4"] / 2.6)
    assert freeze.gradual_unfreezing(m, 0) == ["fc"]
    assert freeze.gradual_unfreezing(m, 1) == ["layer4", "fc"]
    assert freeze.gradual_unfreezing(m, 9) == ["layer3", "layer4", "fc"]
    assert freeze.count_parameters(m) < freeze.count_parameters(m, trainable_only=False)


# --------------------------------------------------------------------------- training core

def test_same_seed_gives_identical_training_numbers():
    def run():
        torch.manual_seed(0)
        m = models.resnet_small(10)
        return train.fit(m, tiny_data().train, tiny_data().val, epochs=2, lr=0.05,
                         schedule="cosine", warmup_steps=2, clip_grad_norm=1.0, seed=7, progress=False)
    a, b = run(), run()
    assert a["train_loss"] == b["train_loss"] and a["val_acc"] == b["val_acc"]


def test_schedules_and_history():
    f = [train.lr_factor("onecycle", s, 100) for s in range(100)]
    assert f[0] == pytest.approx(1 / 25) and max(f) == pytest.approx(1.0, abs=1e-3) and f[-1] < 0.01
    w = [train.lr_factor("cosine", s, 100, warmup_steps=10) for s in range(100)]
    assert w[0] < w[5] < w[10] and w[10] == pytest.approx(1.0) and w[99] < 0.01
    m = models.resnet_small(10)
    gn = monitor.GradNormMonitor()
    h = train.fit(m, tiny_data().train, tiny_data().val, epochs=2, lr=0.05, callbacks=[gn],
                  restore_best=True, progress=False)
    assert len(h) == 2 and set(h[0]) >= {"train_loss", "train_acc", "val_acc", "lr"}
    assert len(h.to_frame()) == 2
    assert len(gn.steps) == 2 * 2 and gn.steps[0]["backbone"] > 0  # 80 images, batch 64: 2 steps an epoch


def test_l2sp_pulls_toward_pretrained():
    m = models.load_pretrained()
    m.reset_head(10, seed=0)
    pen = train.L2SP(m, alpha=1.0)
    assert float(pen(m)) == 0.0
    with torch.no_grad():
        m.layer4.conv1.weight.add_(1.0)
    assert float(pen(m)) > 0


# --------------------------------------------------------------------------- metrics

def test_mmd_matches_direct_formula_and_detects_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g)
    y = torch.randn(50, 5, generator=g) + 0.5
    sigma = 1.7
    k = lambda a, b: torch.exp(-((a - b) ** 2).sum() / (2 * sigma ** 2))  # noqa: E731
    m, n = len(x), len(y)
    kxx = sum(float(k(x[i], x[j])) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(float(k(y[i], y[j])) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(float(k(x[i], y[j])) for i in range(m) for j in range(n)) / (m * n)
    assert shift.mmd2_unbiased(x, y, sigma) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-6)


def test_mmd_near_zero_for_same_distribution_and_grows_with_mean_shift():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(200, 8, generator=g)
    same = shift.mmd2_unbiased(base, torch.randn(200, 8, generator=g))
    assert abs(same) < 0.02
    values = [shift.mmd2_unbiased(base, torch.randn(200, 8, generator=g) + d) for d in (0.25, 0.5, 1.0)]
    assert same < values[0] < values[1] < values[2]


def test_mmd_permutation_test_calibrated():
    g = torch.Generator().manual_seed(2)
    _, p_same = shift.mmd_permutation_test(torch.randn(80, 4, generator=g), torch.randn(80, 4, generator=g), 100)
    _, p_diff = shift.mmd_permutation_test(torch.randn(80, 4, generator=g), torch.randn(80, 4, generator=g) + 0.7, 100)
    assert p_same > 0.05 and p_diff < 0.02


def test_cka_invariant_to_rotation_and_lower_for_unrelated():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 16, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    assert shift.linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-9)
    assert shift.linear_cka(x, 3.0 * x) == pytest.approx(1.0, abs=1e-9)
    assert shift.linear_cka(x, torch.randn(100, 16, generator=g, dtype=torch.float64)) < 0.5


def test_linear_probe_and_adabn():
    m = models.load_pretrained()
    d = world.load_task("target_a", 20, 20)
    ftr, ytr = shift.extract_features(m, d.train)
    fva, yva = shift.extract_features(m, d.val)
    assert shift.linear_probe(ftr, ytr, fva, yva) > 0.5
    shifted = world.WorldDataset("target_a", 200, "val", shift=("contrast", 5))
    adapted = shift.adabn(m, shifted)
    assert not torch.equal(adapted.bn1.running_mean, m.bn1.running_mean)
    assert all(torch.equal(a, b) for a, b in zip(adapted.parameters(), m.parameters()))


def test_source_accuracy_uses_the_original_head():
    m = models.load_pretrained()
    head = m.reset_head(10, seed=0)
    src = world.WorldDataset("source", 600, "val")
    assert monitor.source_accuracy(m, head, src) > 0.85
    assert train.evaluate(m, world.WorldDataset("target_a", 100, "val"))["acc"] < 0.3  # chance: 0.1


def test_late_change_reads_the_last_quarter_of_a_curve():
    assert train.late_change([0.1, 0.5, 0.7, 0.8, 0.8, 0.8, 0.81, 0.8]) == (2, pytest.approx(0.0))
    k, change = train.late_change([0.1, 0.2, 0.3, 0.4])
    assert k == 1 and change == pytest.approx(0.1)
    with pytest.raises(ValueError, match="at least 2 points"):
        train.late_change([0.5])
