"""Unit tests of the feature-hierarchy tools: the orientation task, transfer_blocks, the sweep
runner, block-by-block features/probes/CKA and the lab's figures. Each test can fail."""
import math

import matplotlib
import numpy as np
import pytest
import torch

from tlutils import freeze, hierarchy, models, plots, shift, world

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def pretrained():
    return models.load_pretrained().eval()


def _same_block(a, b, block):
    sa = {k: v for m in freeze.block_modules(a, block) for k, v in m.state_dict().items()}
    sb = {k: v for m in freeze.block_modules(b, block) for k, v in m.state_dict().items()}
    return all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- the orientation task

def test_orientation_task_labels_are_the_bar_angle():
    """The principal axis of each bar's silhouette lies in its class's angle bin."""
    x, y = world.make_images("orientation", 160, seed=2)
    assert x.shape == (160, 3, 32, 32) and world.num_classes("orientation") == world.ORIENTATION_BINS == 8
    assert torch.bincount(y).tolist() == [20] * 8
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    hits = 0
    for img, label in zip(x, y):
        fg = (img - img[:, :2, :2].mean((1, 2), keepdim=True)).abs().sum(0) > 0.25  # differs from the corner colour
        w = fg.float()
        cx, cy = (w * cols).sum() / w.sum(), (w * rows).sum() / w.sum()
        dx, dy = cols - cx, rows - cy
        sxx, syy, sxy = (w * dx * dx).sum(), (w * dy * dy).sum(), (w * dx * dy).sum()
        angle = math.degrees(0.5 * math.atan2(2 * sxy, sxx - syy)) % 180
        centre = (int(label) + 0.5) * 180 / 8
        hits += min(abs(angle - centre), 180 - abs(angle - centre)) < 15
    assert hits >= 0.9 * len(y), f"only {hits}/{len(y)} bars point into their class's angle bin"


def test_orientation_classes_and_determinism():
    names = world.task_classes("orientation")
    assert len(names) == 8 and names[0] == "bar@11deg" and names[-1] == "bar@169deg"
    a, _ = world.make_images("orientation", 16, seed=1)
    b, _ = world.make_images("orientation", 16, seed=1)
    assert torch.equal(a, b)
    assert world.make_images("orientation", 0)[0].shape == (0, 3, 32, 32)


# --------------------------------------------------------------------------- transfer_blocks

@pytest.mark.parametrize("k", [0, 2, 5])
def test_transfer_blocks_copies_exactly_the_first_k_and_freezes_them(pretrained, k):
    net = hierarchy.transfer_blocks(pretrained, k, 7, freeze=True, seed=0)
    assert net.fc.out_features == 7
    backbone = models.BLOCKS[:-1]
    for i, b in enumerate(backbone):
        assert _same_block(net, pretrained, b) == (i < k), b
        assert all(p.requires_grad == (i >= k) for p in freeze.block_parameters(net, b)), b
    assert freeze.trainable_blocks(net) == list(models.BLOCKS[k:])
    net.train()  # the copied BN layers stay in eval mode: their statistics cannot drift
    assert all(not m.training for _, m in freeze.bn_layers(net, backbone[:k]))
    assert all(m.training for _, m in freeze.bn_layers(net, backbone[k:]))


def test_transfer_blocks_fine_tune_mode_and_seed(pretrained):
    a = hierarchy.transfer_blocks(pretrained, 3, 5, freeze=False, seed=4)
    b = hierarchy.transfer_blocks(pretrained, 3, 5, freeze=False, seed=4)
    c = hierarchy.transfer_blocks(pretrained, 3, 5, freeze=False, seed=5)
    assert all(p.requires_grad for p in a.parameters())
    assert _same_block(a, b, "layer4") and not _same_block(a, c, "layer4")
    assert _same_block(a, c, "layer2")  # copied blocks do not depend on the seed
    with pytest.raises(ValueError, match="k must be an int from 0"):
        hierarchy.transfer_blocks(pretrained, 6, 5)


def test_transfer_run_trains_only_what_it_should(pretrained):
    data = world.load_task("orientation", 4, n_val_per_class=2, seed=0)
    net, acc, hist = hierarchy.transfer_run(pretrained, 2, data, fine_tune=False, seed=0, epochs=1, lr=0.05, device="cpu")
    assert 0.0 <= acc <= 1.0
    for b in ("conv1", "layer1"):  # frozen: weights and BN statistics exactly as pretrained
        assert _same_block(net, pretrained, b), b
    tuned, _, curve = hierarchy.transfer_run(pretrained, 2, data, fine_tune=True, seed=0, epochs=2, lr=0.05,
                                           curve=True, device="cpu")
    assert len(hist) == 1 and "val_acc" not in hist[0] and len(curve) == 2 and curve[-1]["val_acc"] == pytest.approx(
        hierarchy.evaluate(tuned, data.val)["acc"])
    assert not _same_block(tuned, pretrained, "layer1")


def test_transfer_groups_learning_rates(pretrained):
    net = hierarchy.transfer_blocks(pretrained, 3, 5, freeze=False)
    groups = {g["name"]: g for g in hierarchy.transfer_groups(net, 3, 0.1, 0.1)}
    assert math.isclose(groups["new"]["lr"], 0.1) and math.isclose(groups["transferred"]["lr"], 0.01)
    n_copied = sum(p.numel() for b in models.BLOCKS[:3] for p in freeze.block_parameters(net, b))
    assert sum(p.numel() for p in groups["transferred"]["params"]) == n_copied
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == sum(p.numel() for p in net.parameters())
    frozen = hierarchy.transfer_blocks(pretrained, 3, 5, freeze=True)
    assert [g["name"] for g in hierarchy.transfer_groups(frozen, 3, 0.1)] == ["new"]


def test_curve_stats():
    means, stds = hierarchy.curve_stats({0: [0.2, 0.4], 1: [0.5]})
    assert means == {0: pytest.approx(0.3), 1: 0.5}
    assert stds[0] == pytest.approx(math.sqrt(0.02)) and stds[1] == 0.0


# --------------------------------------------------------------------------- block by block

def test_block_maps_shapes_and_features_match_extract_features(pretrained):
    x = world.make_images("target_a", 6)[0]
    with torch.no_grad():
        maps = shift.block_maps(pretrained, world.normalize(x))
    assert {b: tuple(m.shape[1:]) for b, m in maps.items()} == {
        "conv1": (16, 32, 32), "layer1": (16, 32, 32), "layer2": (32, 16, 16),
        "layer3": (64, 8, 8), "layer4": (128, 4, 4)}
    data = world.WorldDataset("target_a", 20)
    feats, labels = shift.block_features(pretrained, data, device="cpu")
    for b in ("conv1", "layer3"):
        ref, ref_y = shift.extract_features(pretrained, data, upto=b, device="cpu")
        assert torch.allclose(feats[b], ref, atol=1e-5) and torch.equal(labels, ref_y)
    grid, _ = shift.block_features(pretrained, data, blocks=["layer2"], pool=2, device="cpu")
    assert list(grid) == ["layer2"] and grid["layer2"].shape == (20, 32 * 4)
    with pytest.raises(ValueError, match="unknown block"):
        shift.block_maps(pretrained, x, blocks=["fc"])


def test_cka_by_block_is_one_for_the_same_network_and_lower_for_a_random_one(pretrained):
    data = world.WorldDataset("target_a", 60)
    same = shift.cka_by_block(pretrained, pretrained, data, device="cpu")
    assert all(v == pytest.approx(1.0) for v in same.values())
    other = shift.cka_by_block(pretrained, models.resnet_small(10), data, device="cpu")
    assert other["layer4"] < 0.95


def test_probe_by_block_reads_the_labels(pretrained):
    d = world.load_task("target_a", 10, n_val_per_class=10)
    acc = shift.probe_by_block(pretrained, d.train, d.val, device="cpu")
    assert list(acc) == list(models.BLOCKS[:-1])
    assert acc["layer4"] > 0.5 > acc["conv1"], acc  # shape/texture classes live deep, not in the stem


def test_luminance_fraction():
    grey = torch.randn(4, 1, 3, 3).repeat(1, 3, 1, 1)
    assert torch.allclose(shift.luminance_fraction(grey), torch.ones(4))
    opponent = torch.randn(4, 3, 3, 3)
    opponent = opponent - opponent.mean(1, keepdim=True)  # pure colour differences
    assert torch.allclose(shift.luminance_fraction(opponent), torch.zeros(4), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    assert abs(shift.luminance_fraction(torch.randn(500, 3, 3, 3, generator=g)).mean() - 1 / 3) < 0.03
    with pytest.raises(ValueError, match="expected a conv weight"):
        shift.luminance_fraction(torch.randn(4, 1, 3, 3))


# --------------------------------------------------------------------------- figures

def test_figures_have_labelled_axes(pretrained):
    fig = plots.plot_transfer_curves({"frozen": {0: [0.2, 0.3], 1: [0.5, 0.6]}, "fine-tuned": {0: [0.2, 0.3], 1: [0.6, 0.7]}},
                                     chance=0.125)
    ax = fig.axes[0]
    assert "accuracy" in ax.get_ylabel() and "blocks" in ax.get_xlabel()
    fig = plots.plot_by_block({"cka": {"conv1": 1.0, "layer1": 0.9}}, ylabel="CKA")
    assert fig.axes[0].get_ylabel() == "CKA" and "block" in fig.axes[0].get_xlabel()
    x = world.make_images("orientation", 2)[0]
    with torch.no_grad():
        maps = shift.block_maps(pretrained, world.normalize(x))
    fig = plots.plot_activation_maps(x, maps, labels=["a", "b"])
    assert len(fig.axes) == 2 * 6 and "layer4" in fig.axes[5].get_title()
    fig = plots.plot_filter_grids({"a": pretrained.conv1.weight, "b": models.resnet_small().conv1.weight})
    assert len(fig.axes) == 32
    with pytest.raises(ValueError):
        plots.plot_filter_grids({})
    matplotlib.pyplot.close("all")
