"""Fine-tuning recipes, replicated runs in worker processes, and the step-wise accuracy monitor."""
from __future__ import annotations

import copy
import operator

import pytest
from torch import nn

from tlutils import finetune, freeze, models, monitor, parallel, world
from tlutils.finetune import Recipe


@pytest.fixture(scope="module")
def tiny():
    data = world.load_task("dissimilar", 2, 2, seed=0)
    model = models.load_pretrained()
    source_head = model.reset_head(data.num_classes, seed=0)
    probe = copy.deepcopy(model)
    finetune.train_head(probe, data.train, epochs=1, lr=0.1, batch_size=10)
    rep = {"seed": 0, "data": data, "init": model, "probe": probe, "ood_val": data.val}
    return {"reps": [rep], "source_head": source_head, "source_val": world.WorldDataset("source", 20, "val"),
            "batch_size": 10, "device": "cpu"}


def test_recipes_are_validated_and_prepare_sets_blocks_and_batchnorm():
    with pytest.raises(ValueError, match="bn must be one of"):
        Recipe(bn="train")
    with pytest.raises(ValueError, match="include 'fc'"):
        Recipe(blocks=("layer4",))
    model = models.load_pretrained()
    groups = finetune.prepare(model, Recipe(blocks=("layer4", "fc"), lr=0.1, backbone_lr=0.01, bn="frozen"))
    assert freeze.trainable_blocks(model) == ["layer4", "fc"]
    assert {g["name"]: g["lr"] for g in groups} == {"fc": 0.1, "layer4": pytest.approx(0.01)}
    model.train()
    assert not any(m.training for _, m in freeze.bn_layers(model)), "frozen BN stays in eval mode"
    finetune.prepare(model, Recipe(bn="batch"))
    model.train()
    assert all(m.training for _, m in freeze.bn_layers(model)), "batch mode follows model.train()"


def test_table_gives_mean_spread_and_count():
    t = finetune.table([("a", {"LR": 1}, [{"acc": 0.5}, {"acc": 0.7}])])
    assert t == {"a": {"LR": 1, "acc": 0.6, "acc sd": pytest.approx(0.1414, abs=1e-4), "n": 2}}
    assert finetune.mean_std([0.3]) == (0.3, 0.0)
    with pytest.raises(ValueError):
        finetune.table([("empty", {}, [])])


def test_scratch_start_reinitialises_every_layer(tiny):
    model = finetune.reinitialise(copy.deepcopy(tiny["reps"][0]["init"]), seed=1)
    pre = tiny["reps"][0]["init"]
    assert not any((a == b).all() for (n, a), b in zip(model.named_parameters(), pre.parameters())
                   if a.dim() > 1), "no weight tensor survives"


def test_worker_pool_runs_in_order_and_workers_do_not_change_the_numbers(tiny):
    with parallel.WorkerPool(shared=10, workers=2) as pool:
        assert pool.map(operator.add, [1, 2, 3]) == [11, 12, 13]
    jobs = [{"rep": 0, "start": s, "recipe": Recipe(lr=0.01, epochs=1)} for s in ("probe", "random")]
    inline = parallel.WorkerPool(tiny, workers=1).map(finetune.run_job, jobs)
    with parallel.WorkerPool(tiny, workers=2) as pool:
        assert pool.map(finetune.run_job, jobs) == inline
    assert all(set(r) == {"val_acc", "source_acc", "ood_acc", "finite"} for r in inline)
    assert inline[0]["ood_acc"] is None, "the out-of-distribution pass is paid only when a job asks for it"
    (asked,) = parallel.WorkerPool(tiny, workers=1).map(finetune.run_job, [{**jobs[0], "ood": True}])
    assert 0 <= asked["ood_acc"] <= 1 and asked["val_acc"] == inline[0]["val_acc"]
    with pytest.raises(ValueError, match="workers must be >= 1"):
        parallel.WorkerPool(workers=0)


def test_step_accuracy_is_recorded_before_the_first_update_and_after_each(tiny):
    data = tiny["reps"][0]["data"]
    model = copy.deepcopy(tiny["reps"][0]["probe"])
    mon = monitor.StepAccuracyMonitor(data.val)
    grads = monitor.GradNormMonitor()
    finetune.finetune(model, Recipe(lr=0.01, epochs=2), data.train, callbacks=[mon, grads], batch_size=10)
    assert [s["step"] for s in mon.steps] == [0, 1, 2, 3, 4]
    assert [s["step"] for s in grads.steps] == [0, 1, 2, 3] == [s["step"] for s in mon.losses]
    with pytest.raises(ValueError):
        monitor.StepAccuracyMonitor(data.val, every=0)
    assert isinstance(model.fc, nn.Linear)


def test_a_job_can_ask_for_a_sparse_learning_curve(tiny):
    job = {"rep": 0, "start": "random", "recipe": Recipe(lr=0.01, epochs=4), "curve": False}
    (plain,), (sparse,) = (parallel.WorkerPool(tiny, workers=1).map(finetune.run_job, [j])
                           for j in (job, {**job, "curve_every": 2}))
    assert [r["epoch"] for r in sparse["curve"]] == [2, 4] and "curve" not in plain
    assert sparse["curve"][-1]["acc"] == sparse["val_acc"][-1] == plain["val_acc"][-1], "the curve does not change the run"
    with pytest.raises(ValueError, match="every must be >= 1"):
        monitor.EpochAccuracyMonitor(tiny["reps"][0]["data"].val, every=0)


def test_worker_count_can_be_set_by_the_environment(monkeypatch):
    monkeypatch.setenv("TLUTILS_WORKERS", "1")
    assert parallel.default_workers() == 1 and parallel.WorkerPool().workers == 1
    monkeypatch.setenv("TLUTILS_WORKERS", "3")
    assert parallel.default_workers() == 3
    assert parallel.default_workers("cuda") == 1, "on a GPU the runs stay in one process"
    monkeypatch.setenv("TLUTILS_WORKERS", "two")
    with pytest.raises(ValueError, match="TLUTILS_WORKERS must be a positive integer"):
        parallel.default_workers()
