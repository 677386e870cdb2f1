"""Unit tests of the strategies-and-recipes helpers: LR range test, weighted sampling,
per-class recall, debugging checks, production monitors, strategies, augmentation."""
import copy
import math

import pytest
import torch
from torch import nn

from tlutils import freeze, models, monitor, shift, train, world


@pytest.fixture(scope="module")
def data():
    return world.load_task("target_a", 8, n_val_per_class=4, seed=0)


def small_model(k=10):
    torch.manual_seed(0)
    return models.resnet_small(k, widths=(8, 8, 16, 16))


# --------------------------------------------------------------------------- lr_find

def test_lr_find_restores_the_model_and_suggests_below_the_minimum(data):
    model = small_model()
    model.eval()
    before = copy.deepcopy(model.state_dict())
    r = train.lr_find(model, data.train, start_lr=1e-4, end_lr=10.0, num_steps=40, batch_size=16, progress=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed: lr_find must restore weights and BN statistics"
    assert not model.training, "lr_find must restore the eval mode"
    assert len(r.lrs) == len(r.losses) == len(r.raw_losses) >= 3
    assert all(b > a for a, b in zip(r.lrs, r.lrs[1:])), "the learning rate must grow every step"
    assert r.lrs[0] == pytest.approx(1e-4)
    assert r.min_lr == r.lrs[min(range(len(r.losses)), key=r.losses.__getitem__)]
    assert r.suggestion == pytest.approx(r.min_lr / 10), "default rule: a tenth of the LR at the minimum"
    ema, smoothed = 0.0, []                       # fastai's smoothing: a bias-corrected moving average
    for i, raw in enumerate(r.raw_losses):
        ema = 0.9 * ema + 0.1 * raw
        smoothed.append(ema / (1 - 0.9 ** (i + 1)))
    assert r.losses == pytest.approx(smoothed, rel=1e-9)
    i_min = r.lrs.index(r.min_lr)
    if i_min >= 2:                                # steepest: the most negative slope per decade up to the minimum
        x, y = [math.log10(v) for v in r.lrs[:i_min + 1]], r.losses[:i_min + 1]
        slopes = [(y[min(i + 1, i_min)] - y[max(i - 1, 0)]) / (x[min(i + 1, i_min)] - x[max(i - 1, 0)])
                  for i in range(i_min + 1)]
        assert slopes[r.lrs.index(r.steepest_lr)] == pytest.approx(min(slopes), rel=1e-6)


def test_lr_find_stops_when_the_loss_diverges(data):
    r = train.lr_find(small_model(), data.train, start_lr=1e-3, end_lr=1e4, num_steps=60, batch_size=16,
                      progress=False)
    assert r.diverged and len(r.lrs) < 60, "a range up to 1e4 must blow up and stop early"


def test_lr_find_steepest_rule_and_validation(data):
    r = train.lr_find(small_model(), data.train, num_steps=10, rule="steepest", batch_size=16, progress=False)
    assert r.suggestion == r.steepest_lr and r.rule == "steepest"
    with pytest.raises(ValueError, match="rule"):
        train.lr_find(small_model(), data.train, rule="minimum", progress=False)
    with pytest.raises(ValueError, match="end_lr"):
        train.lr_find(small_model(), data.train, start_lr=1.0, end_lr=0.1, progress=False)


def test_steepest_index_finds_the_fastest_fall():
    lrs = [10 ** (i / 4 - 4) for i in range(12)]
    losses = [2.3, 2.3, 2.29, 2.2, 1.6, 1.0, 0.9, 0.85, 0.8, 0.9, 1.5, 3.0]
    i = train._steepest_index(lrs, losses, upto=8)
    assert i in (4, 5), i


# --------------------------------------------------------------------------- 1cycle: learning rate and momentum

@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_onecycle_cycles_momentum_against_the_learning_rate(data, optimizer):
    class Record(train.Callback):
        def __init__(self):
            self.lr, self.mom = [], []

        def on_step_end(self, state):
            g = state.optimizer.param_groups[0]
            self.lr.append(g["lr"])
            self.mom.append(g["betas"][0] if optimizer == "adam" else g["momentum"])

    rec = Record()
    train.fit(small_model(), data.train, epochs=4, lr=0.01, optimizer=optimizer, schedule="onecycle",
              cycle_momentum=(0.95, 0.85), batch_size=8, callbacks=[rec], progress=False)
    n = len(rec.lr)
    assert n == 4 * math.ceil(len(data.train) / 8)
    peak = max(range(n), key=rec.lr.__getitem__)
    assert rec.mom[0] == pytest.approx(0.95) and min(rec.mom) == pytest.approx(0.85, abs=1e-3)
    assert min(range(n), key=rec.mom.__getitem__) == peak, "momentum is lowest where the learning rate peaks"
    assert rec.mom[-1] > 0.94 and rec.lr[-1] < 0.01 * max(rec.lr)
    assert all(b <= a for a, b in zip(rec.mom[:peak], rec.mom[1:peak + 1])), "momentum falls while the LR rises"
    plain = Record()
    train.fit(small_model(), data.train, epochs=1, lr=0.01, optimizer=optimizer, schedule="onecycle", batch_size=8,
              callbacks=[plain], progress=False)
    assert len(set(plain.mom)) == 1, "without cycle_momentum the momentum stays constant"
    with pytest.raises(ValueError, match="onecycle"):
        train.fit(small_model(), data.train, epochs=1, lr=0.01, cycle_momentum=(0.95, 0.85), progress=False)
    with pytest.raises(ValueError, match="low"):
        train.onecycle_momentum(0, 10, high=0.85, low=0.95)


# --------------------------------------------------------------------------- imbalance and recall

def test_balanced_sampler_draws_classes_equally_often():
    targets = torch.tensor([0] * 90 + [1] * 10)
    sampler = train.balanced_sampler(targets, num_samples=20000, seed=0)
    drawn = targets[torch.tensor(list(iter(sampler)))]
    frac = (drawn == 1).float().mean().item()
    assert 0.47 < frac < 0.53, f"rare class drawn {frac:.2%} of the time, expected about 50%"
    again = list(iter(train.balanced_sampler(targets, num_samples=50, seed=0)))
    assert again == list(iter(train.balanced_sampler(targets, num_samples=50, seed=0))), "same seed, same draws"
    with pytest.raises(ValueError):
        train.balanced_sampler(torch.tensor([], dtype=torch.long))


def test_balanced_sampler_reads_dataset_targets(data):
    s = train.balanced_sampler(data.train)
    assert len(s) == len(data.train)


class FixedModel(nn.Module):
    """Predicts the class stored in the first pixel of each input."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0].long(), self.k).float()


def test_confusion_matrix_and_per_class_recall():
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 0, 0, 1, 1, 0, 2, 2])
    ds = torch.utils.data.TensorDataset(pred.float().view(-1, 1), y)
    cm = train.confusion_matrix(FixedModel(4), ds, num_classes=4, device="cpu")
    assert cm.tolist() == [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    recall = train.per_class_recall(FixedModel(4), ds, num_classes=4, device="cpu")
    assert recall[:3] == [0.75, 0.5, 1.0] and math.isnan(recall[3])


# --------------------------------------------------------------------------- debugging checks

def test_overfit_batch_drives_the_loss_down_and_leaves_the_model(data):
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    losses = train.overfit_batch(model, data.train, steps=40, batch_size=8, lr=0.01, device="cpu")
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    freeze.freeze(model, models.BLOCKS)
    with pytest.raises(ValueError, match="nothing to train"):
        train.overfit_batch(model, data.train)


def test_nonfinite_names_the_broken_tensors():
    model = small_model()
    assert monitor.nonfinite(model) == []
    with torch.no_grad():
        model.layer2.conv1.weight[0, 0, 0, 0] = float("nan")
    model.fc.weight.grad = torch.full_like(model.fc.weight, float("inf"))
    model.bn1.running_var[0] = float("inf")
    assert set(monitor.nonfinite(model)) == {"layer2.conv1.weight", "fc.weight.grad", "bn1.running_var"}


def test_prediction_entropy_bounds():
    k = 5
    confident = torch.utils.data.TensorDataset(torch.tensor([[0.0], [3.0]]), torch.tensor([0, 3]))
    h = monitor.prediction_entropy(FixedModel(k), confident, device="cpu")
    # one-hot logits (1 vs 0) are not a one-hot distribution: entropy is between 0 and 1
    assert h.shape == (2,) and (0 < h).all() and (h < 1).all()

    class Uniform(nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), k)

    assert torch.allclose(monitor.prediction_entropy(Uniform(), confident, device="cpu"), torch.ones(2))
    nats = monitor.prediction_entropy(Uniform(), confident, normalized=False, device="cpu")
    assert torch.allclose(nats, torch.full((2,), math.log(k)))


def test_feature_mmd_separates_a_shift_from_a_resample():
    model = models.load_pretrained()
    ref = world.WorldDataset("target_a", 60, "val", seed=0)
    same = world.WorldDataset("target_a", 60, "test", seed=0)
    shifted = world.WorldDataset("target_a", 60, "test", seed=0, shift=("contrast", 5))
    m_same, p_same = monitor.feature_mmd(model, ref, same, n_permutations=50)
    m_shift, p_shift = monitor.feature_mmd(model, ref, shifted, n_permutations=50)
    assert m_shift > m_same + 0.05 and p_shift < 0.05 < p_same, (m_same, p_same, m_shift, p_shift)


# --------------------------------------------------------------------------- strategies and probe head

def test_linear_probe_head_reads_raw_features_and_ignores_constant_ones():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    centres = torch.randn(3, 6, generator=g) * 3
    x = centres[y] + torch.randn(90, 6, generator=g) + 5.0      # offset and scale: the folding must handle them
    x = torch.cat([x, torch.full((90, 1), 7.0)], 1)              # a dead channel: constant on the training set
    head = shift.linear_probe_head(x[:60], y[:60], 3, seed=0)
    assert isinstance(head, nn.Linear) and head.weight.shape == (3, 7)
    assert (head(x[60:]).argmax(1) == y[60:]).float().mean().item() > 0.9
    assert torch.equal(head.weight[:, -1], torch.zeros(3)), "a constant feature must get zero weight"
    again = shift.linear_probe_head(x[:60], y[:60], 3, seed=0)
    assert torch.equal(head.weight, again.weight) and torch.equal(head.bias, again.bias)
    acc = shift.linear_probe(x[:60], y[:60], x[60:], y[60:], seed=0)
    assert acc == (head(x[60:]).argmax(1) == y[60:]).float().mean().item(), "linear_probe scores linear_probe_head"
    with pytest.raises(ValueError, match="num_classes"):
        shift.linear_probe_head(x[:60], y[:60], 2)


def test_apply_strategy_sets_trainable_blocks_and_bn_modes():
    model = models.load_pretrained()
    assert freeze.trainable_blocks(freeze.apply_strategy(model, "feature extraction")) == ["fc"]
    assert all(isinstance(m, freeze.EvalBatchNorm2d) for _, m in freeze.bn_layers(model))
    freeze.apply_strategy(model, "fine-tune top")
    assert freeze.trainable_blocks(model) == ["layer4", "fc"]
    frozen_bn = {n for n, m in freeze.bn_layers(model) if isinstance(m, freeze.EvalBatchNorm2d)}
    assert frozen_bn == {n for n, _ in freeze.bn_layers(model, ["conv1", "layer1", "layer2", "layer3"])}
    freeze.apply_strategy(model, "full fine-tune", freeze_bn_stats=True)
    assert freeze.trainable_blocks(model) == list(models.BLOCKS)
    assert all(isinstance(m, freeze.EvalBatchNorm2d) for _, m in freeze.bn_layers(model))
    with pytest.raises(ValueError, match="unknown strategy"):
        freeze.apply_strategy(model, "linear probe")


# --------------------------------------------------------------------------- data: subsets and augmentation

def test_take_per_class_and_its_errors():
    ds = world.WorldDataset("target_b", 100, "train", seed=0)
    sk = world.take_per_class(ds, [10, 1] * 5)
    assert torch.bincount(sk.targets, minlength=10).tolist() == [10, 1] * 5
    assert len(sk.raw) == len(sk.data) == len(sk) == 55 and len(ds) == 100
    i = 3
    j = torch.nonzero(torch.all((ds.data == sk.data[i]).flatten(1), dim=1)).flatten()
    assert len(j) == 1 and ds.targets[j[0]] == sk.targets[i], "images keep their labels"
    with pytest.raises(ValueError):
        world.take_per_class(ds, [11] * 10)
    with pytest.raises(ValueError):
        world.take_per_class(ds, [1] * 9)


def test_flipshift_keeps_content_and_blur_removes_texture():
    torch.manual_seed(0)
    x = world.WorldDataset("target_b", 10, "train", seed=0).data[0]
    y = world.FlipShift(max_shift=0, flip=True)
    outs = {bool(torch.equal(y(x), x)) for _ in range(20)}
    assert outs == {True, False}, "a random flip: sometimes flipped, sometimes not"
    shifted = world.FlipShift(max_shift=3, flip=False)(x)
    assert shifted.shape == x.shape
    blurred = world.Blur(4)(x)
    hf = lambda t: (t[:, 1:] - t[:, :-1]).abs().mean()   # noqa: E731 - high-frequency energy
    assert hf(blurred) < 0.5 * hf(x), "a strong blur removes most of the fine texture"
    with pytest.raises(ValueError):
        world.Blur(0)
    with pytest.raises(ValueError):
        world.FlipShift(max_shift=-1)


# --------------------------------------------------------------------------- comparisons over seeds

def test_verdict_needs_ranges_that_do_not_overlap():
    from tlutils.lab import as_points
    from tlutils.strategies import AS_WORDS, points, spread, verdict
    assert verdict([0.9, 0.92, 0.95], [0.80, 0.85, 0.89]) == "above"
    assert verdict([0.80, 0.85, 0.89], [0.9, 0.92, 0.95]) == "below"
    assert verdict([0.9, 0.92, 0.95], [0.80, 0.85, 0.91]) == "within noise", "one seed overlaps: no verdict"
    assert verdict([0.5], [0.4]) == "above", "one seed each: any difference counts"
    assert set(AS_WORDS) == {"above", "within noise", "below"}
    assert spread([0.9, 0.8, 1.0]) == "90.0% (80.0%\u2013100.0%)" and spread([0.5]) == "50.0%"
    assert points([0.02, -0.01, 0.05]) == "+2.0 (-1.0 to +5.0) points"
    assert as_points(0.021) == "2.1 points above" and as_points(-0.015, "more", "less") == "1.5 points less"
    assert as_points(0.0004) == "level with" and as_points(-0.0004, level="no different") == "no different"
    with pytest.raises(ValueError):
        verdict([], [0.5])
