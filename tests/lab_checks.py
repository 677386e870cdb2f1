"""What each lab claims in its text, asserted on the numbers it recorded with ``glue``.

One ``check_<notebook stem>(g, profile)`` per lab; ``g`` maps glue names to values.
``EXTRA_SEEDS`` lists seeds (besides 0) a lab's claims must also hold for.
"""

EXTRA_SEEDS = {"forgetting": [1]}


def check_forgetting(g: dict, profile: str) -> None:
    chance = g["chance"]
    assert g["probe_val_acc"] >= 0.80, g["probe_val_acc"]
    assert g["collapse_val_acc"] <= chance + 0.10, (g["collapse_val_acc"], chance)
    assert g["fixed_val_acc"] >= g["probe_val_acc"] - 0.02, (g["fixed_val_acc"], g["probe_val_acc"])
    assert g["scratch_val_acc"] <= g["probe_val_acc"] - 0.20, (g["scratch_val_acc"], g["probe_val_acc"])
    assert g["source_acc_after_collapse"] <= 0.30, g["source_acc_after_collapse"]
    assert g["source_acc_after_fix"] >= 0.8 * g["source_acc_pretrained"], (g["source_acc_after_fix"], g["source_acc_pretrained"])
    assert g["grad_norm_spike_ratio"] >= 5, g["grad_norm_spike_ratio"]
    assert g["drift_naive_layer4"] > g["drift_fix_layer4"]
    for fig in ("fig_curves", "fig_grad_norms", "fig_drift"):
        assert g[fig] == "figure", fig


EXTRA_SEEDS["batchnorm"] = [1]


def check_batchnorm(g: dict, profile: str) -> None:
    pre = g["source_acc_pretrained"]
    # "frozen" is not frozen: requires_grad=False + train mode drifts and forgets; freeze_bn keeps everything
    assert g["bn_stat_drift_eval"] == 0, g["bn_stat_drift_eval"]
    assert g["source_acc_frozen_bn_eval"] == pre, (g["source_acc_frozen_bn_eval"], pre)
    assert g["bn_stat_drift_train"] > 0, g["bn_stat_drift_train"]
    assert g["source_acc_frozen_bn_train"] <= pre - 0.05, (g["source_acc_frozen_bn_train"], pre)
    by_target = g["source_acc_bn_train_by_target"]
    assert by_target["dissimilar"] < by_target["target_a"] < pre, by_target
    # model.train() undoes BN layers put in eval by hand; freeze_bn survives it
    assert g["bn_training_after_train_by_hand"] == g["n_bn_layers"] > 0, g["bn_training_after_train_by_hand"]
    assert g["bn_training_after_train_freeze_bn"] == 0, g["bn_training_after_train_freeze_bn"]
    assert g["drift_manual_equals_train"] is True
    assert g["source_acc_manual_eval"] <= pre - 0.05, (g["source_acc_manual_eval"], pre)
    # evaluating in train mode: batch-dependent, lower accuracy; batch size 1 is batch-independent but poor
    flips, accs = g["flip_rate_by_batch_size"], g["train_mode_acc_by_batch_size"]
    assert g["pred_flip_rate_train_mode"] > 0, g["pred_flip_rate_train_mode"]
    assert flips[1] == 0 and flips[2] > flips[64] > 0, flips
    assert g["source_acc_eval_mode"] == pre
    assert all(a < pre for a in accs.values()), (accs, pre)
    assert accs[1] < accs[2] < accs[64], accs
    assert g["one_image_n_distinct_predictions"] >= 2, g["one_image_n_distinct_predictions"]
    # eval() is not no_grad() and no_grad() is not eval()
    assert g["eval_builds_graph"] is True and g["no_grad_updates_running_stats"] is True
    # small batches when fine-tuning: BN in train mode fails at batch size 1, frozen statistics do not
    train, frozen = g["acc_by_batch_size"], g["acc_by_batch_size_frozen_bn"]
    assert set(train) == set(frozen) >= {1, 2, 4, 8, 16, 32, 64}, (train, frozen)
    assert train[1] <= frozen[1] - 0.3, (train, frozen)
    assert train[1] < train[2] < train[4], train
    assert min(frozen.values()) >= g["dissimilar_probe_acc"], (frozen, g["dissimilar_probe_acc"])
    assert max(frozen.values()) - min(frozen.values()) <= 0.1, frozen
    assert g["dissimilar_probe_acc_batch_stats"] <= g["dissimilar_probe_acc"] - 0.1
    # AdaBN: re-estimated statistics recover part of a covariate shift
    assert g["shift_target_acc_shifted"] <= g["shift_target_acc_clean"] - 0.2
    assert g["shift_target_acc_adabn"] >= g["shift_target_acc_shifted"] + 0.05
    assert g["shift_probe_acc_adabn_stats"] > g["shift_probe_acc_pretrained_stats"]
    # re-normalising the input with the shifted data's own statistics vs AdaBN
    r = g["renorm_vs_adabn"]
    assert all(v["AdaBN"] >= v["pretrained input stats"] + 0.05 for v in r.values()), r
    assert r["brightness"]["own input stats"] >= r["brightness"]["pretrained input stats"] + 0.2, r
    for kind in ("noise", "blur"):
        assert abs(r[kind]["own input stats"] - r[kind]["pretrained input stats"]) <= 0.03, r
        assert r[kind]["AdaBN"] > r[kind]["own input stats"], r
    for fig in ("fig_bn_drift", "fig_one_image", "fig_batch_size"):
        assert g[fig] == "figure", fig
