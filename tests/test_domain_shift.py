"""Unit tests of the domain-shift helpers: first-conv adaptation, severity reports, Spearman,
the MMD estimator's properties, the transfer strategies and the decision-matrix bookkeeping."""
import copy
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from tlutils import models, plots, shift, strategies, world  # noqa: E402


@pytest.fixture(scope="module")
def pretrained():
    return models.load_pretrained().eval()


# --------------------------------------------------------------------------- first convolution

def test_sum_adapted_conv_on_grey_equals_rgb_network_on_grey_copied(pretrained):
    x = world.to_greyscale(world.make_images("target_a", 8, seed=1)[0])
    adapted = models.adapt_first_conv(copy.deepcopy(pretrained), 1, "sum").eval()
    with torch.no_grad():
        got = adapted(world.normalize(x))
        want = pretrained(world.normalize(x.repeat(1, 3, 1, 1)))
    assert adapted.conv1.weight.shape == (16, 1, 3, 3)
    assert torch.allclose(adapted.conv1.weight, pretrained.conv1.weight.sum(1, keepdim=True))
    assert torch.allclose(got, want, atol=1e-4)
    two = models.adapt_first_conv(copy.deepcopy(pretrained), 2, "sum").conv1.weight  # two channels share the sum
    assert torch.allclose(two.sum(1, keepdim=True), pretrained.conv1.weight.sum(1, keepdim=True), atol=1e-6)


def test_copy_keeps_rgb_filters_and_reinit_is_random_but_seeded(pretrained):
    w = pretrained.conv1.weight.detach()
    four = models.adapt_first_conv(copy.deepcopy(pretrained), 4, "copy")
    assert torch.allclose(four.conv1.weight[:, :3], w * 3 / 4)
    assert torch.allclose(four.conv1.weight[:, 3], w[:, 0] * 3 / 4)
    a = models.adapt_first_conv(copy.deepcopy(pretrained), 1, "reinit", seed=3).conv1.weight
    b = models.adapt_first_conv(copy.deepcopy(pretrained), 1, "reinit", seed=3).conv1.weight
    assert torch.equal(a, b)
    assert not torch.allclose(a, w.sum(1, keepdim=True), atol=1e-3)
    # the rest of the network is untouched
    assert torch.equal(four.layer1.conv1.weight, pretrained.layer1.conv1.weight)


def test_adapt_first_conv_rejects_bad_input(pretrained):
    with pytest.raises(ValueError, match="unknown mode 'avg'"):
        models.adapt_first_conv(copy.deepcopy(pretrained), 1, "avg")
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        models.adapt_first_conv(copy.deepcopy(pretrained), 0)
    grey = models.adapt_first_conv(copy.deepcopy(pretrained), 1, "sum")
    with pytest.raises(ValueError, match="adapts RGB filters"):
        models.adapt_first_conv(grey, 2, "sum")


# --------------------------------------------------------------------------- statistics

def test_spearman_known_values():
    assert shift.spearman([0, 1, 2, 3], [1, 5, 7, 100]) == pytest.approx(1.0)
    assert shift.spearman([0, 1, 2, 3], [3, 2, 1, 0]) == pytest.approx(-1.0)
    # one swapped pair among five: 1 - 6 * 2 / (5 * 24) = 0.9
    assert shift.spearman([1, 2, 3, 4, 5], [1, 2, 3, 5, 4]) == pytest.approx(0.9)
    # ties get their average rank: ranks of y are 1, 2.5, 2.5
    assert shift.spearman([1, 2, 3], [0, 1, 1]) == pytest.approx(0.8660254, abs=1e-6)
    assert math.isnan(shift.spearman([1, 2, 3], [4, 4, 4]))
    with pytest.raises(ValueError):
        shift.spearman([1, 2], [1, 2, 3])


def test_mmd_is_unbiased_where_the_plug_in_estimate_is_not():
    """Averaged over many draws from one distribution, MMD^2_u is ~0; the biased V-statistic is not."""
    g = torch.Generator().manual_seed(0)
    unbiased, biased = [], []
    for _ in range(200):
        x, y = torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g)
        unbiased.append(shift.mmd2_unbiased(x, y, sigma=1.0))
        kxx, kyy, kxy = (shift.rbf_kernel(a, b, 1.0) for a, b in ((x, x), (y, y), (x, y)))
        biased.append(float(kxx.mean() + kyy.mean() - 2 * kxy.mean()))
    u, b = torch.tensor(unbiased), torch.tensor(biased)
    se = float(u.std()) / math.sqrt(len(u))
    assert abs(float(u.mean())) < 3 * se
    assert float(b.mean()) > 10 * se
    assert min(unbiased) < 0  # MMD^2_u can be negative


def test_median_heuristic_and_translation_invariance():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 4, generator=g, dtype=torch.float64)
    y = torch.randn(15, 4, generator=g, dtype=torch.float64) + 1
    z = torch.cat([x, y])
    d = [float((z[i] - z[j]).norm()) for i in range(len(z)) for j in range(len(z)) if i != j]
    assert shift.median_heuristic(x, y) == pytest.approx(float(torch.tensor(d).median()), rel=1e-6)
    # an RBF kernel depends on distances only (exp of dot products would not be invariant)
    assert shift.mmd2_unbiased(x + 5, y + 5, 1.3) == pytest.approx(shift.mmd2_unbiased(x, y, 1.3), abs=1e-9)


def test_adabn_averages_over_images_not_batches(pretrained):
    """The first BN layer's input does not depend on the normalisation: its new statistics must be
    the mean and unbiased variance over every pixel of every image, whatever the batch size."""
    data = world.WorldDataset("target_a", 70, "val", shift=("contrast", 4))
    with torch.no_grad():
        out = pretrained.conv1(data.data).double()             # (n, C, h, w): the input of bn1
    want_mean = out.mean((0, 2, 3))
    want_var = out.transpose(0, 1).flatten(1).var(1)           # unbiased, over images and pixels
    for batch_size in (64, 7):                                 # 64: a short last batch of 6 images
        adapted = shift.adabn(pretrained, data, batch_size=batch_size)
        assert torch.allclose(adapted.bn1.running_mean.double(), want_mean, rtol=1e-5, atol=1e-6)
        assert torch.allclose(adapted.bn1.running_var.double(), want_var, rtol=1e-5, atol=1e-6)
        assert not adapted.training and pretrained.bn1.momentum == adapted.bn1.momentum
        assert all(torch.equal(a, b) for a, b in zip(adapted.parameters(), pretrained.parameters()))
    # the per-batch average (PyTorch's momentum=None) is a different number when batches differ in size
    per_batch = torch.stack([out[i:i + 64].mean((0, 2, 3)) for i in range(0, len(out), 64)]).mean(0)
    assert not torch.allclose(per_batch, want_mean, rtol=1e-3)


# --------------------------------------------------------------------------- severity reports

@pytest.fixture(scope="module")
def classifier_and_data(pretrained):
    data = world.load_task("target_a", 10, 8, seed=0)
    model = strategies.probe_start(pretrained, data, adapt_bn=False)
    ref, _ = shift.extract_features(model, world.WorldDataset("target_a", 80, "test", seed=0))
    return model.eval(), data, ref


def test_severity_report_images_accuracy_and_mmd(classifier_and_data):
    model, data, ref = classifier_and_data
    clean = shift.severity_report(model, data.val, "noise", 0, ref, sigma=5.0, n_show=4)
    noisy = shift.severity_report(model, data.val, "noise", 5, ref, sigma=5.0, n_show=4, probe_train=data.train)
    assert clean["images"].shape == (4, 3, 32, 32) and torch.equal(clean["images"], data.val.raw[:4])
    assert not torch.equal(noisy["images"], clean["images"])
    assert noisy["mmd2"] > clean["mmd2"] + 0.05 and abs(clean["mmd2"]) < 0.05
    assert 0 <= noisy["accuracy"] < clean["accuracy"] <= 1
    assert 0 <= noisy["probe_acc"] <= 1
    with pytest.raises(ValueError, match="WorldDataset"):
        shift.severity_report(model, torch.utils.data.TensorDataset(data.val.data, data.val.targets), "noise", 1, ref)


def test_severity_sweep_shares_severity_zero_and_bandwidth(classifier_and_data):
    model, data, ref = classifier_and_data
    rows = shift.severity_sweep(model, data.val, ["blur", "noise"], [0, 3], ref, progress=False)
    assert [(r["kind"], r["severity"]) for r in rows] == [("blur", 0), ("blur", 3), ("noise", 0), ("noise", 3)]
    assert rows[0]["mmd2"] == rows[2]["mmd2"] and rows[0]["accuracy"] == rows[2]["accuracy"]
    half = len(ref) // 2
    sigma = shift.median_heuristic(ref[:half], ref[half:])
    direct = shift.severity_report(model, data.val, "noise", 3, ref, sigma=sigma)
    assert rows[3]["mmd2"] == pytest.approx(direct["mmd2"])


# --------------------------------------------------------------------------- strategies

def test_linear_probe_head_learns_separable_classes_deterministically():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    feats = torch.randn(60, 5, generator=g) + labels[:, None].float() * 3
    head = shift.linear_probe_head(feats, labels, 3, seed=1)
    again = shift.linear_probe_head(feats, labels, 3, seed=1)
    assert isinstance(head, torch.nn.Linear) and head.weight.shape == (3, 5)
    assert torch.equal(head.weight, again.weight)
    assert float((head(feats).argmax(1) == labels).float().mean()) > 0.9
    untrained = shift.linear_probe_head(feats, labels, 3, epochs=0)
    assert float((untrained(feats).argmax(1) == labels).float().mean()) < 0.7
    with pytest.raises(ValueError):
        shift.linear_probe_head(feats[:1], labels[:1], 3)


def test_probe_start_fits_a_head_with_or_without_adapted_statistics(pretrained):
    data = world.load_task("target_a", 6, 4, seed=0)
    before = copy.deepcopy(pretrained.state_dict())
    adapted = strategies.probe_start(pretrained, data, seed=1)
    kept = strategies.probe_start(pretrained, data.train, adapt_bn=False, seed=1)   # a dataset works too
    assert all(torch.equal(v, pretrained.state_dict()[k]) for k, v in before.items()), "the pretrained model is unchanged"
    assert not adapted.training and not kept.training and adapted.fc.out_features == data.num_classes
    assert torch.equal(kept.bn1.running_mean, pretrained.bn1.running_mean)
    assert torch.allclose(adapted.bn1.running_mean, shift.adabn(pretrained, data.train).bn1.running_mean)
    assert not torch.allclose(adapted.bn1.running_mean, pretrained.bn1.running_mean)
    again = strategies.probe_start(pretrained, data.train, seed=1)
    assert torch.equal(again.fc.weight, adapted.fc.weight), "same seed, same head"
    assert strategies.epochs_for(30, 70, 32) == 10 and strategies.epochs_for(30, 70, 32, min_epochs=12) == 12
    with pytest.raises(ValueError):
        strategies.epochs_for(0, 70, 32)


def test_run_cell_strategies_and_what_they_train(pretrained):
    data = world.load_task("target_a", 3, 3, seed=0)
    accs, trained = strategies.run_cell(pretrained, data, steps=2, device="cpu")
    assert list(accs) == list(strategies.STRATEGIES)
    assert all(0 <= a <= 1 for a in accs.values())
    fe, top, full = trained["feature extraction"], trained["fine-tune top"], trained["full fine-tune"]
    assert torch.equal(top.layer3.conv1.weight, fe.layer3.conv1.weight)         # frozen below layer4
    assert not torch.equal(top.layer4.conv1.weight, fe.layer4.conv1.weight)
    assert not torch.equal(full.conv1.weight, fe.conv1.weight)
    assert torch.equal(fe.conv1.weight, pretrained.conv1.weight)                # the pretrained model is untouched
    with pytest.raises(ValueError, match="unknown strategy"):
        strategies.run_cell(pretrained, data, ["linear probe"], steps=1)


def test_decision_matrix_bookkeeping_and_figure():
    runs = {"clean": {5: {"feature extraction": [0.9, 0.88], "full fine-tune": [0.92, 0.86], "scratch": [0.2, 0.2]},
                      50: {"feature extraction": [0.95, 0.95], "full fine-tune": [0.94, 0.93], "scratch": [0.5, 0.6]}},
            "shifted": {5: {"feature extraction": [0.4, 0.4], "full fine-tune": [0.55, 0.55], "scratch": [0.1, 0.1]},
                        50: {"feature extraction": [0.6, 0.6], "full fine-tune": [0.8, 0.8], "scratch": [0.7, 0.6]}}}
    acc = {c: {n: {s: sum(v) / 2 for s, v in a.items()} for n, a in bs.items()} for c, bs in runs.items()}
    m = strategies.DecisionMatrix(acc=acc, runs=runs)
    best = m.best()
    # best by the mean; clear only when the ranges over seeds do not overlap (clean/5 flips between seeds)
    assert best["clean"][5][1] == pytest.approx(0.0) and best["clean"][5][2] is False
    assert best["clean"][50] == ("feature extraction", pytest.approx(0.015), True)
    assert best["shifted"][50] == ("full fine-tune", pytest.approx(0.15), True)
    assert m.spread()["shifted"][50]["scratch"] == pytest.approx(0.1)
    row = m.table()["shifted, 50 per class"]
    assert row["best (mean over seeds)"] == "FT all" and row["margin over the runner-up"] == "15.0 points"
    assert m.table()["clean, 5 per class"]["clear (ranges apart)"] == "no (within noise)"
    # ahead on every seed is not enough: the ranges overlap (the course's one rule, strategies.verdict)
    paired = {"c": {5: {"feature extraction": [0.50, 0.40], "full fine-tune": [0.55, 0.45]}}}
    close = strategies.DecisionMatrix(acc={"c": {5: {"feature extraction": 0.45, "full fine-tune": 0.5}}}, runs=paired)
    assert close.best()["c"][5] == ("full fine-tune", pytest.approx(0.05), False)
    assert m.gain("full fine-tune", "feature extraction")["shifted"][50] == pytest.approx(0.2)
    assert m.gain_runs("full fine-tune", "feature extraction")["clean"][5] == pytest.approx([0.02, -0.02])
    assert strategies.DecisionMatrix(acc=acc).best()["shifted"][50][2] is False  # one seed: never clear
    fig = plots.plot_decision_matrix(acc)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and len(ax.texts) == 4
    assert [t.get_text() for t in ax.get_yticklabels()] == ["50", "5"]  # large data on top
    with pytest.raises(ValueError):
        strategies.decision_matrix(None, lambda c, n, s: None, ["clean"], [5], ["feature extraction"])
    with pytest.raises(ValueError, match="distinct seeds"):
        strategies.decision_matrix(None, lambda c, n, s: None, ["clean"], [5], seeds=[0, 0])
