"""What each lab claims in its text, asserted on the numbers it recorded with ``glue``.

One ``check_<notebook stem>(g, profile)`` per lab; ``g`` maps glue names to values.
``EXTRA_SEEDS`` lists seeds (besides 0) a lab's claims must also hold for.
"""

EXTRA_SEEDS = {"forgetting": [1, 2]}


def _signed_matches(text: str, points: float) -> bool:
    """A glued "x.y points above/below" says what ``points`` (a difference in points) says."""
    return text == f"{abs(points):.1f} points {'above' if points >= 0 else 'below'}"


def check_forgetting(g: dict, profile: str) -> None:
    import math

    chance, pre = g["chance"], g["source_acc_pretrained"]
    reps = g["replicates"]
    if profile == "full":
        assert reps >= 3, reps
    # the settings: the naive run uses the head's optimizer and LR, at most the pretraining peak
    assert g["naive_lr"] == g["head_lr"] <= max(g["head_lr"], g["pretrain_peak_lr"]), (g["naive_lr"], g["head_lr"])
    assert g["naive_lr"] <= g["pretrain_peak_lr"] and math.isclose(g["naive_lr_over_peak"], g["naive_lr"] / g["pretrain_peak_lr"])
    # the probe works well but not perfectly (issue 13 asks for 80-90%; this task gives 89-92%, see the report)
    assert 0.75 <= g["probe_val_acc"] <= 0.95, g["probe_val_acc"]
    # the incident: from the probe the target task is at chance within an epoch and still far below the
    # probe after three (issue 13 asks for chance + 0.1 after three: seeds 1 and 2 relearn some of it),
    # the source task is gone, the loss finite
    by_epoch = g["naive_val_acc_by_epoch"]
    assert len(by_epoch) == 3 and g["naive_val_acc_e1"] == by_epoch[0] <= chance + 0.10, (by_epoch, chance)
    assert g["collapse_val_acc"] == by_epoch[2] <= g["probe_val_acc"] - 0.3, (by_epoch, g["probe_val_acc"])
    assert g["source_acc_after_collapse"] <= 0.30, g["source_acc_after_collapse"]
    assert g["naive_loss_finite"] is True
    # from a random head the source task is gone as well
    assert len(g["naive_random_head_val_acc_by_epoch"]) == 3
    assert g["source_acc_after_naive_random_head"] <= 0.30, g["source_acc_after_naive_random_head"]
    # scratch (the pretraining recipe, 60 epochs) ends above the fix on this task
    assert g["scratch_val_acc"] > g["fixed_val_acc"], (g["scratch_val_acc"], g["fixed_val_acc"])
    # target accuracy hides forgetting: FT ends above the probe on the target with the source below half
    assert g["ft_id_acc"] > g["lp_id_acc"] and g["source_acc_l2sp_control"] <= pre / 2, (g["ft_id_acc"], g["lp_id_acc"])
    # the fix adds accuracy over the probe and keeps the source task
    assert g["fixed_val_acc"] >= g["probe_val_acc"] + 0.03, (g["fixed_val_acc"], g["probe_val_acc"])
    assert math.isclose(g["fix_gain_points"], 100 * (g["fixed_val_acc"] - g["probe_val_acc"]), abs_tol=0.06)
    assert g["source_acc_after_fix"] >= 0.9 * pre, (g["source_acc_after_fix"], pre)

    # the sweep: >= 6 LRs over >= 2 decades incl. the head's LR and the peak; both heads, both BN modes
    sweep, fracs = g["lr_sweep"], g["sweep_lrs_over_peak"]
    assert len(fracs) >= 6 and max(fracs) / min(fracs) >= 100, fracs
    assert g["head_lr_over_peak"] in fracs and 1.0 in fracs and g["sweep_lowest_lr_over_peak"] == min(fracs) == 0.01
    assert len(sweep) == 4 * len(fracs) and all(r["n"] == reps for r in sweep.values()), len(sweep)
    assert {(r["head"], r["BN"]) for r in sweep.values()} == {(h, b) for h in ("random", "probe") for b in ("batch", "frozen")}
    row = {(r["LR / peak"], r["head"], r["BN"]): r for r in sweep.values()}
    # batch statistics lose at least a third of the source at every LR; at the lowest LR frozen keep far more
    assert all(r["source"] <= 2 / 3 * pre for r in sweep.values() if r["BN"] == "batch"), sweep
    for head in ("probe", "random"):
        batch, frozen = g[f"source_lowest_lr_{head}_batch"], g[f"source_lowest_lr_{head}_frozen"]
        assert batch == row[(0.01, head, "batch")]["source"] and frozen == row[(0.01, head, "frozen")]["source"]
        assert frozen >= batch + 0.2 and frozen >= 0.8 * pre, (head, batch, frozen)
        # with frozen BN the LR decides: forgetting starts within the sweep, at or below the peak
        onset = g[f"onset_{head}_frozen_value"]
        assert 0 < onset <= 1.0, (head, onset)
        assert all((r["source"] < pre / 2) == (r["LR / peak"] >= onset) for r in sweep.values()
                   if r["head"] == head and r["BN"] == "frozen"), (head, onset)
    # the trained head is larger; some probe-start runs at high LRs diverge; the probe buys speed at a safe LR
    assert g["head_norm_ratio"] > 2, g["head_norm_ratio"]
    assert any(r["diverged"] > 0 for r in sweep.values() if r["head"] == "probe"), sweep
    assert g["target_e3_003_probe_frozen"] >= g["target_e3_003_random_frozen"] + 0.1
    assert g["source_003_probe_frozen"] >= 0.9 * pre, g["source_003_probe_frozen"]
    # BN's switch raises the loss before any update; at the naive LR even frozen BN forgets
    assert g["naive_first_loss"] >= g["probe_train_loss"] + 1.0, (g["naive_first_loss"], g["probe_train_loss"])
    assert row[(g["naive_lr_over_peak"], "probe", "frozen")]["source"] < pre / 2
    # the random head passes smaller gradients back than the probe's head
    assert g["grad_norm_first_random_head"] < g["grad_norm_first_naive"], (g["grad_norm_first_random_head"], g["grad_norm_first_naive"])

    # the ablation: five ingredients, one at a time
    abl = g["fix_ablation"]
    assert set(abl) == {"full fix", "all blocks", "backbone LR = head LR", "BN in train mode", "no warmup", "no clipping"}
    assert all(r["n"] == reps for r in abl.values())
    fix = abl["full fix"]

    def noise(key, *names):  # two standard deviations of the noisier row; one replicate (ci): 3 points
        return 2 * max(abl[n][f"{key} sd"] for n in names) if reps >= 3 else 0.03

    bn = abl["BN in train mode"]
    assert bn["source"] == min(r["source"] for r in abl.values()) <= fix["source"] - 0.2, abl
    for name in ("backbone LR = head LR", "all blocks"):
        assert abl[name]["source"] < fix["source"] - (noise("source", name, "full fix") if reps >= 3 else 0), (name, abl)
    for name in ("no warmup", "no clipping"):
        assert abs(abl[name]["target"] - fix["target"]) <= noise("target", name, "full fix"), (name, abl)
    for name, key in (("all blocks", "all_blocks"), ("backbone LR = head LR", "same_lr"), ("BN in train mode", "bn_train"),
                      ("no warmup", "no_warmup"), ("no clipping", "no_clip")):
        assert _signed_matches(g[f"abl_{key}_source_text"], round(100 * (abl[name]["source"] - fix["source"]), 1))
        assert _signed_matches(g[f"abl_{key}_target_text"], round(100 * (abl[name]["target"] - fix["target"]), 1))

    # gradient norms, like with like: the control starts from the same weights on the same batch
    assert math.isclose(g["grad_norm_first_control"], g["grad_norm_first_naive"], rel_tol=1e-6)
    assert g["source_acc_after_control"] <= pre / 2, g["source_acc_after_control"]   # the control forgets too
    assert math.isclose(g["grad_norm_spike_ratio"], g["grad_norm_peak_naive"] / g["grad_norm_median_naive"], rel_tol=1e-3)
    drop, peak = g["acc_drop_step"], g["grad_norm_peak_step"]
    word = "precedes" if 0 <= drop and peak < drop else "accompanies" if peak == drop else "follows" if drop >= 0 else "comes"
    assert g["spike_timing"].startswith(word), (g["spike_timing"], peak, drop)
    assert g["drift_naive_layer4"] > g["drift_fix_layer4"]

    # LP-FT vs FT vs LP, in and out of distribution; L2-SP next to its control
    t = g["lpft_table"]
    assert all(t[k]["n"] == reps for k in t)
    pairs = {"ft_lp_id": ("FT", "LP", "ID"), "ft_lp_ood": ("FT", "LP", "OOD"),
             "lpft_ft_id": ("LP-FT", "FT", "ID"), "lpft_ft_ood": ("LP-FT", "FT", "OOD")}
    for key, (a, b, col) in pairs.items():
        assert _signed_matches(g[f"{key}_text"], round(100 * (t[a][col] - t[b][col]), 1)), key
    assert g["kumar_signs_reproduced"] == sum(v["same sign"] == "yes" for v in g["lpft_vs_kumar"].values())
    assert g["ft_id_acc"] == t["FT"]["ID"] and g["lpft_ood_acc"] == t["LP-FT"]["OOD"]
    # LP-FT needed a learning rate no larger than FT's: from the probe, high LRs are unstable
    assert g["lpft_lr_over_peak"] <= g["ft_lr_over_peak"], (g["lpft_lr_over_peak"], g["ft_lr_over_peak"])
    assert row[(0.1, "probe", "frozen")]["source"] < row[(0.1, "random", "frozen")]["source"]
    assert g["l2sp_control_val_acc"] == t["FT"]["ID"] and g["l2sp_val_acc"] == t["L2-SP (FT + penalty)"]["ID"]
    assert _signed_matches(g["l2sp_vs_control_target_text"], 100 * (g["l2sp_val_acc"] - g["l2sp_control_val_acc"]))
    assert _signed_matches(g["l2sp_vs_control_source_text"], 100 * (g["source_acc_after_l2sp"] - g["source_acc_l2sp_control"]))
    for fig in ("fig_curves", "fig_grad_norms", "fig_drift", "fig_lr_sweep", "fig_spike_vs_drop"):
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


EXTRA_SEEDS["feature_hierarchy"] = [1]


def check_feature_hierarchy(g: dict, profile: str) -> None:
    frozen, tuned, selfbnb = g["transfer_curve_frozen"], g["transfer_curve_finetuned"], g["transfer_curve_selfbnb"]
    fstd, tstd = g["transfer_curve_frozen_std"], g["transfer_curve_finetuned_std"]
    ks = sorted(frozen)  # the ci profile skips some k
    assert set(tuned) == set(frozen) >= {0, 2, 4, 5} and set(selfbnb) == set(ks) - {0}, (frozen, selfbnb)
    if profile == "full":
        assert ks == [0, 1, 2, 3, 4, 5], ks
    assert g["chance"] == 1 / 8
    # first-layer filters: structured but colour-blind (the source never needed colour); random ones are not
    assert g["filter_luminance_pretrained"] >= 0.8 >= 0.5 >= g["filter_luminance_random"], (
        g["filter_luminance_pretrained"], g["filter_luminance_random"])
    # probes: the similar task is read best at the top; orientation peaks in the middle and falls at layer4
    sim, ori = g["probe_acc_by_block_similar"], g["probe_acc_by_block"]
    assert max(sim, key=sim.get) == "layer4" and sim["layer4"] >= 0.9, sim
    assert g["probe_best_depth"] in (3, 4) and g["probe_best_block"] in ("layer2", "layer3"), ori
    assert ori["layer4"] <= g["probe_best_acc"] - 0.15, ori
    # AnB: general lower blocks beat scratch (same budget); the frozen top block is specific
    assert g["frozen_best_k"] in (3, 4), frozen
    assert g["frozen_best_acc"] >= g["scratch_acc"] + 0.15, (g["frozen_best_acc"], g["scratch_acc"])
    assert g["frozen_top_drop"] >= 0.3 and frozen[5] == g["frozen_all_acc"], frozen
    # AnB+: fine-tuned at or above frozen at every k (one seed's noise: ~0.03 per accuracy on 240-480 images)
    for k in ks[1:]:
        tol = 0.05 + 2 * max(fstd[k], tstd[k])
        assert tuned[k] >= frozen[k] - tol, (k, tuned, frozen)
    assert g["finetuned_gain_all"] >= 0.1 and tuned[5] >= frozen[5] + 0.1, (tuned, frozen)
    assert g["finetuned_best_acc"] >= g["scratch_acc"] + 0.15, (g["finetuned_best_acc"], g["scratch_acc"])
    # BnB control: no co-adaptation dip (the curve rises with k); the AnB drop at the top is specificity
    for a, b in zip(ks[1:], ks[2:]):
        assert selfbnb[b] >= selfbnb[a] - 0.05, selfbnb
    assert g["selfbnb_all_acc"] >= g["frozen_all_acc"] + 0.3, (g["selfbnb_all_acc"], g["frozen_all_acc"])
    # with more epochs, scratch catches up with the best transfer run (pretraining buys speed here)
    assert g["scratch_epochs"] >= 2 * g["epochs"]
    assert g["scratch_long_acc"] >= g["finetuned_best_acc"] - 0.06, (g["scratch_long_acc"], g["finetuned_best_acc"])
    # CKA, pretrained vs fully fine-tuned: highest for the stem, lowest for layer4, falling with depth
    cka = g["cka_by_block"]
    assert list(cka) == ["conv1", "layer1", "layer2", "layer3", "layer4"], cka
    assert max(cka, key=cka.get) == "conv1" and min(cka, key=cka.get) == "layer4", cka
    assert all(b <= a + 0.005 for a, b in zip(list(cka.values()), list(cka.values())[1:])), cka
    assert g["cka_first"] >= 0.98 and g["cka_last"] <= 0.95, cka
    # fine-tuning put the angle back into layer4
    assert g["probe_acc_layer4_finetuned"] >= g["probe_acc_layer4"] + 0.05, (g["probe_acc_layer4_finetuned"], g["probe_acc_layer4"])
    for fig in ("fig_filters", "fig_activation_maps", "fig_probes", "fig_transfer_curves", "fig_cka"):
        assert g[fig] == "figure", fig


EXTRA_SEEDS["domain_shift"] = [1]
COVARIATE_SHIFTS = ("contrast", "brightness", "noise", "blur", "texture")


def check_domain_shift(g: dict, profile: str) -> None:
    clean = g["clean_acc"]
    assert clean >= 0.9, clean
    # 1. severity sweep: accuracy falls and feature MMD^2 rises with severity; the probe agrees
    for kind in COVARIATE_SHIFTS:
        assert g["spearman_acc_by_kind"][kind] <= -0.9, (kind, g["spearman_acc_by_kind"])
        assert g["spearman_mmd_by_kind"][kind] >= 0.9, (kind, g["spearman_mmd_by_kind"])
        assert g["spearman_probe_by_kind"][kind] <= -0.9, (kind, g["spearman_probe_by_kind"])
        assert g["acc_by_severity"][kind][-1] <= clean - 0.4, (kind, g["acc_by_severity"][kind])
        assert g["mmd_by_severity"][kind][-1] >= 0.2, (kind, g["mmd_by_severity"][kind])
        assert abs(g["mmd_colour_sev5"]) < 0.1 * g["mmd_by_severity"][kind][-1], g["mmd_colour_sev5"]
    # colour changes the pixels, not this backbone's features or its accuracy
    assert g["acc_colour_sev5"] >= clean - 0.05, (g["acc_colour_sev5"], clean)
    assert abs(g["mmd_colour_sev5"]) <= 0.01 and abs(g["mmd_clean"]) <= 0.01, (g["mmd_colour_sev5"], g["mmd_clean"])
    # 2. AdaBN: repairs the covariate shifts (acceptance: >= 2 kinds), nothing to repair for colour,
    # lost information stays lost, a one-class unlabelled sample does harm
    gains = g["adabn_gain_by_kind"]
    assert all(gains[k] >= 0.05 for k in COVARIATE_SHIFTS), gains
    assert g["adabn_n_kinds_helped"] >= 2
    assert abs(gains["colour"]) <= 0.02, gains
    assert g["adabn_acc_blur"] <= clean - 0.2 and g["adabn_acc_noise"] <= clean - 0.2, g["adabn_acc_by_kind"]
    assert g["adabn_one_class_acc"] <= g["shifted_acc_contrast"] - 0.03, (g["adabn_one_class_acc"], g["shifted_acc_contrast"])
    # 3. greyscale: the summed filters reproduce the RGB network exactly; adapting beats re-initialising
    assert g["grey_mean_conv_max_abs_diff"] < 1e-4
    fc = g["first_conv_adapt_vs_reinit"]
    assert min(fc["mean"], fc["copy"]) >= fc["reinit"] + 0.2, fc
    assert fc["mean"] >= 0.85 and abs(fc["mean"] - fc["copy"]) <= 0.05, fc
    # 4. the decision matrix
    acc = g["decision_matrix_acc"]
    for cond in acc:
        for n, a in acc[cond].items():
            if cond != "dissimilar task":       # scratch is hopeless on target_a at this budget
                assert a["scratch"] <= max(a.values()) - 0.2, (cond, n, a)
            if cond == "no shift":              # without a shift, feature extraction is (close to) the best
                assert a["feature extraction"] >= max(a.values()) - 0.04, (cond, n, a)
    assert g["danger_zone_best_acc"] <= 0.6, g["danger_zone_best_acc"]
    assert g["danger_zone_best_acc"] >= g["danger_zone_scratch_acc"] + 0.15
    assert g["m_small_dissimilar_ftall"] >= g["m_small_dissimilar_scratch"] + 0.1
    # the textbook's danger-zone advice: an earlier block helps on the dissimilar task, not under the overlay
    probes = g["danger_probe_by_block"]
    assert g["danger_dissimilar_best_block"] == "layer3", probes
    assert g["danger_dissimilar_best_block_acc"] >= g["danger_dissimilar_layer4_probe_acc"] + 0.05, probes
    assert g["danger_strong_best_block"] == "layer4", probes
    # 5. CKA: the stem does not change, the top changes more under the strong shift
    cka = g["cka_by_block"]
    for cond, by_block in cka.items():
        assert by_block["conv1"] >= 0.98 and by_block["conv1"] >= by_block["layer4"], (cond, by_block)
    assert g["cka_layer4_strong_shift"] <= g["cka_layer4_no_shift"] - 0.01, cka
    if profile == "full":   # the matrix needs the full training budget for fine-tuning to pay off
        assert g["deeper_ft_gain_strongest"] >= 0.05, g["deeper_ft_gain_by_severity"]
        assert g["deeper_ft_gain_strongest"] >= g["deeper_ft_gain_no_shift"] + 0.05, g["deeper_ft_gain_by_severity"]
        assert abs(g["deeper_ft_gain_no_shift"]) <= 0.03, g["deeper_ft_gain_by_severity"]
        strong = f"texture {g['matrix_strong_severity']}"
        assert all(max(a, key=a.get) == "full fine-tune" for a in acc[strong].values()), acc[strong]
        assert abs(g["m_large_dissimilar_scratch"] - g["m_large_dissimilar_ftall"]) <= 0.03
        assert g["cka_layer4_strong_shift"] <= g["cka_layer4_no_shift"] - 0.1, cka
    for fig in ("fig_shift_examples", "fig_severity_sweep", "fig_decision_matrix", "fig_cka", "fig_danger_probe_by_block"):
        assert g[fig] == "figure", fig


EXTRA_SEEDS["strategies"] = [1]


def check_strategies(g: dict, profile: str) -> None:
    import math

    chance = g["chance"]
    acc = g["acc_by_size_and_strategy"]
    assert set(acc) == {"feature extraction", "top blocks", "full fine-tuning", "from scratch"}, acc
    assert all(set(v) == set(g["sizes"]) for v in acc.values()), acc
    # transfer clearly beats scratch with little data; scratch improves with data and (full) catches up
    assert g["transfer_gain_smallest"] >= 0.3, g["transfer_gain_smallest"]
    assert g["fe_acc_smallest"] >= g["scratch_acc_smallest"] + 0.3, (g["fe_acc_smallest"], g["scratch_acc_smallest"])
    assert g["scratch_acc_largest"] >= g["scratch_acc_smallest"] + 0.3, (g["scratch_acc_smallest"], g["scratch_acc_largest"])
    if profile == "full":
        assert g["scratch_acc_largest"] >= g["fe_acc_largest"] - 0.05, (g["scratch_acc_largest"], g["fe_acc_largest"])
    assert g["trainable_params_by_strategy"]["feature extraction"] * 20 < g["trainable_params_by_strategy"]["top blocks"]
    # the probe: fine-tuning after it is never much worse, and within a few points at most sizes
    gains = [v["gain"] for v in g["probe_vs_finetune"].values()]
    assert g["probe_gain_min"] == min(gains) >= -0.04, gains
    assert sum(abs(x) <= 0.05 for x in gains) >= len(gains) / 2, gains
    # head design: pooling for "what", flatten for "where"
    hd = g["head_design"]
    assert hd["target_a"]["global average pooling"] > hd["target_a"]["flatten"], hd
    assert hd["dissimilar"]["flatten"] > hd["dissimilar"]["global average pooling"], hd
    # LR range test: suggestion is min/10, steepest is below the minimum; training at the minimum collapses
    assert math.isclose(g["lr_finder_suggestion"], g["lr_finder_min"] / 10, rel_tol=0.06), (g["lr_finder_suggestion"], g["lr_finder_min"])
    assert g["lr_finder_steepest"] <= g["lr_finder_min"]
    assert g["acc_at_loss_minimum"] <= chance + 0.2, g["acc_at_loss_minimum"]
    assert g["acc_at_loss_minimum"] <= g["onecycle_acc"] - 0.5, (g["acc_at_loss_minimum"], g["onecycle_acc"])
    assert g["onecycle_acc"] >= 0.85 and g["onecycle_acc"] >= g["constant_acc"] - 0.01, g["onecycle_vs_constant"]
    # preprocessing
    assert g["wrong_norm_cost_imagenet"] >= 0.03, g["wrong_norm_cost"]
    assert g["wrong_norm_cost_none"] >= 0.3, g["wrong_norm_cost"]
    assert abs(g["wrong_norm_cost_own"]) <= 0.03, g["wrong_norm_cost"]
    assert g["serve_acc_none"] <= chance + 0.05, g["serve_mismatch_acc"]
    assert g["serve_acc_imagenet"] <= g["serve_acc_right"] - 0.2, g["serve_mismatch_acc"]
    # augmentation: flips and shifts help, a strong blur destroys the texture signal
    assert g["aug_gain_flipshift"] > 0, g["augmentation_acc"]
    assert g["aug_cost_blur"] >= 0.2, g["augmentation_acc"]
    # imbalance: plain training ignores the rare classes; weighted sampling recovers part of them
    assert g["frequent_recall_plain"] >= 0.85 and g["rare_recall_plain"] <= 0.25, g["imbalance_recall"]
    assert g["rare_recall_plain"] <= g["frequent_recall_plain"] - 0.6, g["imbalance_recall"]
    assert g["rare_recall_weighted"] >= g["rare_recall_plain"] + 0.15, g["imbalance_recall"]
    assert g["frequent_recall_weighted"] < g["frequent_recall_plain"], g["imbalance_recall"]
    # monitoring: MMD flags the shift, entropy rises but stays small, accuracy (unseen in production) falls
    assert g["mmd_shifted"] >= g["mmd_clean"] + 0.05 and g["mmd_p_shifted"] <= 0.05 < g["mmd_p_clean"], g["monitoring"]
    assert g["entropy_clean"] < g["entropy_shifted"] <= 0.2, g["monitoring"]
    assert g["acc_shifted_incoming"] <= g["acc_clean_incoming"] - 0.3, g["monitoring"]
    assert isinstance(g["seconds_by_strategy"], str) and "feature extraction" in g["seconds_by_strategy"]
    for fig in ("fig_sizes", "fig_cost", "fig_lr_find", "fig_onecycle", "fig_recall"):
        assert g[fig] == "figure", fig
