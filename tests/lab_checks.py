"""What each lab claims in its text, asserted on the numbers it recorded with ``glue``.

One ``check_<notebook stem>(g, profile)`` per lab; ``g`` maps glue names to values.
``EXTRA_SEEDS`` lists seeds (besides 0) a lab's `ci` claims must also hold for: the forgetting lab's
headline holds for the default seed and two others in both profiles (in `full`, its three replicates
are seeds 0 to 2). For the other labs the book's numbers are the evidence over seeds: their `full`
runs repeat the comparisons their chapters draw over three seeds, and the checks decide on that spread.
"""

EXTRA_SEEDS = {"forgetting": [1, 2]}


def _signed_matches(text: str, points: float) -> bool:
    """A glued "x.y points above/below" (or "level with") says what ``points`` (a difference in points) says."""
    p = round(points, 1)
    return text == ("level with" if p == 0 else f"{abs(p):.1f} points {'above' if p > 0 else 'below'}")


def _words_say(text: str, diff: float, up: str, down: str, level: str) -> bool:
    """``text`` ("2.5 points higher", or ``level``) says what ``diff`` (a difference of fractions) says, to
    the 0.1 point it is written with; ``diff`` was glued rounded to 4 decimals, the words were not."""
    points = 100 * diff
    if text == level:
        return abs(points) < 0.051
    number, unit, word = text.split(" ")
    return unit == "points" and word == (up if points > 0 else down) and abs(float(number) - abs(points)) <= 0.051


def check_forgetting(g: dict, profile: str) -> None:
    import math

    chance, pre = g["chance"], g["source_acc_pretrained"]
    reps = g["replicates"]
    assert g["replicates_text"] == (f"{reps} replicates" if reps != 1 else "1 replicate"), g["replicates_text"]
    if profile == "full":
        assert reps >= 3, reps
    # the settings: the naive run uses the head's optimizer and LR, which is the pretraining peak itself
    assert g["naive_lr"] == g["head_lr"] == g["pretrain_peak_lr"] and g["naive_lr_over_peak"] == 1.0, (g["naive_lr"], g["head_lr"])
    # the probe works well but not perfectly (issue 13 asks for 80-90%; this task gives 89-92%, see the report)
    assert 0.75 <= g["probe_val_acc"] <= 0.95, g["probe_val_acc"]
    # the incident: from the probe the target task is at chance within an epoch and still far below the
    # probe after three (issue 13 asks for chance + 0.1 after three: seeds 1 and 2 relearn some of it),
    # the source task is gone, the loss finite
    by_epoch = g["naive_val_acc_by_epoch"]
    assert len(by_epoch) == 3 and g["naive_val_acc_e1"] == by_epoch[0] <= chance + 0.02, (by_epoch, chance)
    assert g["collapse_val_acc"] == by_epoch[2] <= g["probe_val_acc"] - 0.3, (by_epoch, g["probe_val_acc"])
    assert g["source_acc_after_collapse"] <= 0.30, g["source_acc_after_collapse"]
    assert g["naive_loss_finite"] is True
    # from a random head the source task is gone as well
    assert len(g["naive_random_head_val_acc_by_epoch"]) == 3
    assert g["source_acc_after_naive_random_head"] <= 0.30, g["source_acc_after_naive_random_head"]
    # scratch (the pretraining recipe, 60 epochs) ends above the fix on this task
    assert g["scratch_val_acc"] > g["fixed_val_acc"], (g["scratch_val_acc"], g["fixed_val_acc"])
    # ... and its budget was enough: the mean curve moved by less than two points over its last quarter
    curve, every = g["scratch_curve"], g["scratch_curve_every"]
    assert len(curve) == g["scratch_epochs"] // every and g["scratch_late_epochs"] == len(curve) // 4 * every, curve
    assert math.isclose(g["scratch_late_change"], curve[-1] - curve[-1 - len(curve) // 4], abs_tol=2e-4), curve
    assert abs(g["scratch_late_change"]) < 0.02, curve
    assert _words_say(g["scratch_late_change_text"], g["scratch_late_change"], "up", "down", "unchanged")
    # target accuracy hides forgetting: FT ends above the probe on the target with the source below half
    assert g["ft_id_acc"] > g["lp_id_acc"] and g["source_acc_l2sp_control"] <= pre / 2, (g["ft_id_acc"], g["lp_id_acc"])
    # the fix adds accuracy over the probe and keeps the source task
    assert g["fixed_val_acc"] >= g["probe_val_acc"] + 0.03, (g["fixed_val_acc"], g["probe_val_acc"])
    assert math.isclose(g["fix_gain_points"], 100 * (g["fixed_val_acc"] - g["probe_val_acc"]), abs_tol=0.06)
    assert g["source_acc_after_fix"] >= 0.9 * pre, (g["source_acc_after_fix"], pre)
    # gradual unfreezing (one replicate) ends above the probe and keeps the source task
    assert g["gradual_val_acc"] > g["probe_val_acc"] and g["source_acc_after_gradual"] >= 0.9 * pre, (g["gradual_val_acc"], pre)
    assert _signed_matches(g["gradual_vs_probe_text"], 100 * (g["gradual_val_acc"] - g["probe_val_acc"]))

    # the incident on every replicate, against the report's numbers and the lab's targets (issue 13)
    inc = g["incident_by_seed"]
    seeds = [row for key, row in inc.items() if key.startswith("seed ")]
    assert len(seeds) == reps and seeds[0]["probe"] == g["probe_val_acc"] == g["probe_val_acc_replicates"][0], inc
    targets = {"probe": lambda r: 0.80 <= r["probe"] <= 0.90,
               "naive_e3": lambda r: r["naive, target after epoch 3"] <= chance + 0.10,
               "naive_source": lambda r: r["naive, source"] <= 0.30,
               "fix_target": lambda r: r["fix, target"] >= r["probe"] + 0.03,
               "fix_source": lambda r: r["fix, source"] >= 0.9 * pre}
    for key, ok in targets.items():
        assert g[f"n_on_target_{key}"] == sum(map(ok, seeds)), key
    assert list(inc["replicates on target"].values()) == [f"{g[f'n_on_target_{k}']} of {reps}" for k in targets], inc
    assert (g["probe_acc_min"], g["probe_acc_max"]) == (min(r["probe"] for r in seeds), max(r["probe"] for r in seeds))
    assert g["naive_e3_max"] == max(r["naive, target after epoch 3"] for r in seeds)
    assert g["incident_probe_acc"] == inc["the incident (report)"]["probe"]
    # "the probe is stronger than the incident's on every replicate"; "the source task is gone on every one"
    assert g["probe_acc_min"] > g["incident_probe_acc"], (g["probe_acc_min"], g["incident_probe_acc"])
    assert g["n_on_target_naive_source"] == reps, inc
    if reps >= 3:   # intro.md: "on other seeds the target task can partly recover within three epochs"
        assert g["n_on_target_naive_e3"] < reps, inc
    # "the fix meets both of its targets on every replicate"
    assert g["n_on_target_fix_target"] == g["n_on_target_fix_source"] == reps, inc

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
    assert not any(r["diverged"] for r in sweep.values() if r["head"] == "probe" and r["LR / peak"] in fracs[:2]), sweep
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
    assert g["abl_noise_text"].startswith("both within two standard deviations" if reps >= 3 else "both within 3 points")
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
    # LP-FT needed a smaller learning rate than FT's: from the probe, high LRs are unstable
    assert g["lpft_lr_over_peak"] < g["ft_lr_over_peak"], (g["lpft_lr_over_peak"], g["ft_lr_over_peak"])
    assert row[(0.1, "probe", "frozen")]["source"] < row[(0.1, "random", "frozen")]["source"]
    assert g["l2sp_control_val_acc"] == t["FT"]["ID"] and g["l2sp_val_acc"] == t["L2-SP (FT + penalty)"]["ID"]
    assert _signed_matches(g["l2sp_vs_control_target_text"], 100 * (g["l2sp_val_acc"] - g["l2sp_control_val_acc"]))
    assert _signed_matches(g["l2sp_vs_control_source_text"], 100 * (g["source_acc_after_l2sp"] - g["source_acc_l2sp_control"]))
    for fig in ("fig_curves", "fig_grad_norms", "fig_drift", "fig_lr_sweep", "fig_spike_vs_drop", "fig_scratch_curve"):
        assert g[fig] == "figure", fig


def check_batchnorm(g: dict, profile: str) -> None:
    from tlutils.strategies import AS_WORDS, verdict
    pre = g["source_acc_pretrained"]
    # "frozen" is not frozen: requires_grad=False + train mode drifts and forgets; freeze_bn keeps everything
    assert g["bn_stat_drift_eval"] == 0, g["bn_stat_drift_eval"]
    assert g["source_acc_frozen_bn_eval"] == pre, (g["source_acc_frozen_bn_eval"], pre)
    # "both look like a successful run": on the target task alone nothing shows that the backbone changed
    assert min(g["target_acc_bn_train"], g["target_acc_bn_eval"]) >= 0.85, (g["target_acc_bn_train"], g["target_acc_bn_eval"])
    assert g["bn_stat_drift_train"] > 0, g["bn_stat_drift_train"]
    assert g["backbone_weights_changed_any_run"] is False             # "no backbone weight changed"
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
    # small batches when fine-tuning, on every seed: BN in train mode fails at batch size 1 and suffers
    # at 2, frozen statistics work at every batch size (never below the probe); the means rise 1 -> 2 -> 4
    n_seeds = g["n_seeds"]
    assert n_seeds >= (3 if profile == "full" else 2), n_seeds
    train, frozen = g["acc_by_batch_size"], g["acc_by_batch_size_frozen_bn"]
    sweep = g["batch_size_sweep_runs"]
    assert set(train) == set(frozen) == set(sweep["train"]) >= {1, 2, 4, 8, 16, 32, 64}, (train, frozen)
    assert all(len(v) == n_seeds for mode in ("train", "frozen") for v in sweep[mode].values()), sweep
    for i, probe in enumerate(sweep["probe"]):
        t, f = ({b: v[i] for b, v in sweep[mode].items()} for mode in ("train", "frozen"))
        assert t[1] <= f[1] - 0.3, (i, t, f)                                        # "fails at batch size 1"
        assert t[2] < f[2] and t[1] < t[2], (i, t, f)                               # "suffers at 2"
        assert min(f.values()) >= probe, (i, f, probe)                              # "works at every batch size"
        assert t[64] < max(t.values()) and t[64] < f[64], (i, t, f)                # "falls off at the large end"
    assert train[1] < train[2] < train[4], train
    assert g["acc_frozen_bn_min"] == min(min(v) for v in sweep["frozen"].values())
    gaps = [f - t for f, t in zip(sweep["frozen"][1], sweep["train"][1])]
    assert g["b1_gap_min_points"] == round(100 * min(gaps), 1) >= 30, (g["b1_gap_min_points"], gaps)
    assert max(frozen.values()) - min(frozen.values()) <= 0.1, frozen
    table = g["batch_size_table"]
    assert table["batch size 1"]["BN in train mode"]["max"] == max(sweep["train"][1]), table
    # switching the probe to batch statistics costs accuracy before any update, on every seed
    drops = [a - b for a, b in zip(sweep["probe"], g["dissimilar_probe_acc_batch_stats_runs"])]
    assert g["batch_stats_drop_min_points"] == round(100 * min(drops), 1) >= 10, (g["batch_stats_drop_min_points"], drops)
    # AdaBN: re-estimated statistics recover part of a covariate shift
    assert g["shift_target_acc_shifted"] <= g["shift_target_acc_clean"] - 0.2
    assert g["shift_target_acc_adabn"] >= g["shift_target_acc_shifted"] + 0.05
    r = g["adabn_runs"]
    assert all(len(v) == n_seeds for v in r.values()), r
    assert g["adabn_gain_min"] > 0, r                                     # "AdaBN helped on every seed"
    control = r["clean, after AdaBN on clean images (control)"]
    assert all(c < a for c, a in zip(control, r["clean target_a"])), r   # the control: "lower on every seed"
    assert g["shift_probe_acc_adabn_stats"] > g["shift_probe_acc_pretrained_stats"]       # means over the seeds
    spr = g["shift_probe_runs"]
    assert all(len(v) == g["n_seeds"] for v in spr.values()), spr
    assert g["shift_probe_adabn_vs_pretrained_words"] == AS_WORDS[verdict(spr["adabn"], spr["pretrained"])], spr
    # re-normalising the input with the shifted data's own statistics vs AdaBN, on every seed
    runs = g["renorm_runs"]
    assert set(runs) == {"contrast", "brightness", "noise", "blur"}, runs
    for i in range(n_seeds):
        r = {kind: {col: v[i] for col, v in row.items()} for kind, row in runs.items()}
        assert all(v["AdaBN"] >= v["pretrained input stats"] + 0.05 for v in r.values()), (i, r)   # "helped with every shift"
        assert r["brightness"]["own input stats"] >= r["brightness"]["pretrained input stats"] + 0.2, (i, r)  # "largely undoes"
        for kind in ("noise", "blur"):                                                   # "does nothing for noise or blur"
            assert abs(r[kind]["own input stats"] - r[kind]["pretrained input stats"]) <= 0.03, (i, r)
            assert r[kind]["AdaBN"] > r[kind]["own input stats"], (i, r)
    shown = g["renorm_vs_adabn"]
    assert all(shown[k][c]["min"] == min(v) and shown[k][c]["max"] == max(v) for k, row in runs.items() for c, v in row.items())
    for fig in ("fig_bn_drift", "fig_one_image", "fig_batch_size"):
        assert g[fig] == "figure", fig


def check_feature_hierarchy(g: dict, profile: str) -> None:
    from tlutils.strategies import AS_WORDS, verdict
    frozen, tuned, selfbnb = g["transfer_curve_frozen"], g["transfer_curve_finetuned"], g["transfer_curve_selfbnb"]
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
    assert all(b > a for a, b in zip(list(sim.values()), list(sim.values())[1:])), sim   # "improves block after block"
    assert g["probe_best_depth"] in (3, 4) and g["probe_best_block"] in ("layer2", "layer3"), ori
    assert ori["layer4"] <= g["probe_best_acc"] - 0.15, ori                # means over the seeds
    pr = g["probe_runs"]
    assert all(len(v) == g["n_seeds"] for by in pr.values() for v in by.values()), pr
    assert g["probe_layer4_vs_best_words"] == AS_WORDS[verdict(pr["orientation"]["layer4"], pr["orientation"][g["probe_best_block"]])], pr
    # AnB: general lower blocks beat scratch (same budget); the frozen top block is specific
    assert g["frozen_best_k"] in (3, 4), frozen
    assert g["frozen_best_acc"] >= g["scratch_acc"] + 0.15, (g["frozen_best_acc"], g["scratch_acc"])
    assert g["frozen_top_drop"] >= 0.3, frozen
    # AnB+: fine-tuning the fully copied network lifts it above frozen (the chapter quotes the rest, no claim)
    assert tuned[5] > frozen[5], (tuned, frozen)
    # "freezing everything but the head is the worst transfer setting; fine-tuning, or copying fewer blocks, is far better"
    assert frozen[5] == min([v for k, v in frozen.items() if k > 0] + [v for k, v in tuned.items() if k > 0]), (frozen, tuned)
    assert tuned[5] >= frozen[5] + 0.1 and g["frozen_top_drop"] >= 0.1, (tuned, frozen)
    # "a short fine-tuning run recovers only part of the top block's drop"
    assert tuned[5] < frozen[4], (tuned, frozen)
    assert g["finetuned_best_acc"] >= g["scratch_acc"] + 0.15, (g["finetuned_best_acc"], g["scratch_acc"])
    # BnB control, no dip in the middle: from one k to the next the curve never falls by more than two points
    for a, b in zip(ks[1:], ks[2:]):
        assert selfbnb[b] >= selfbnb[a] - 0.02, (a, b, selfbnb)
    assert g["selfbnb_all_acc"] >= g["frozen_all_acc"] + 0.3, (g["selfbnb_all_acc"], g["frozen_all_acc"])
    # with more epochs, scratch catches up with the best transfer run (pretraining buys speed here)
    assert g["scratch_epochs"] >= 2 * g["epochs"]
    assert g["scratch_long_acc"] >= g["finetuned_best_acc"], (g["scratch_long_acc"], g["finetuned_best_acc"])
    # ... and its learning curve has flattened: the last quarter of its epochs changes it by less than three points
    assert abs(g["scratch_last_quarter_gain"]) < 0.03, g["scratch_curve"]
    # CKA, pretrained vs fully fine-tuned: highest for the stem, lowest for layer4, falling with depth on every seed
    cka, ckr = g["cka_by_block"], g["cka_runs"]
    assert list(cka) == ["conv1", "layer1", "layer2", "layer3", "layer4"], cka
    assert all(len(v) == g["n_seeds"] for v in ckr.values()), ckr
    falls = all(all(b < a for a, b in zip(per_seed, per_seed[1:])) for per_seed in zip(*ckr.values()))
    assert g["cka_falls_with_every_block"] is falls is True, ckr
    assert g["cka_first"] >= 0.98 and g["cka_last"] <= 0.95, cka
    # fine-tuning put the angle back into layer4: every seed's probe above the pretrained backbone's
    tuned4 = g["probe_runs_finetuned"]["layer4"]
    assert abs(g["probe_acc_layer4_finetuned"] - sum(tuned4) / len(tuned4)) <= 1e-4, tuned4
    assert min(tuned4) >= g["probe_acc_layer4_first_seed"] + 0.05, (tuned4, g["probe_acc_layer4_first_seed"])
    assert g["probe_layer4_finetuned_vs_pretrained_words"] == AS_WORDS["above"]
    for fig in ("fig_filters", "fig_activation_maps", "fig_probes", "fig_transfer_curves", "fig_scratch_curve", "fig_cka"):
        assert g[fig] == "figure", fig


# (no extra seed: the ci run already repeats every comparison over n_seeds = 2 seeds)
COVARIATE_SHIFTS = ("contrast", "brightness", "noise", "blur", "texture")


def check_domain_shift(g: dict, profile: str) -> None:
    from tlutils.strategies import AS_WORDS, verdict
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
    # 2. AdaBN, on every seed: repairs the covariate shifts, nothing to repair for colour,
    # lost information stays lost, a one-class unlabelled sample does harm
    n_seeds, runs = g["n_seeds"], g["adabn_gain_runs"]
    assert n_seeds >= (3 if profile == "full" else 2) and all(len(v) == n_seeds for v in runs.values()), runs
    assert all(min(runs[k]) > 0 for k in COVARIATE_SHIFTS), runs          # "helped on every seed"
    assert g["adabn_n_kinds_helped"] >= 2
    assert g["adabn_clean_control_max_abs_diff"] <= 0.005, g["adabn_clean_control_max_abs_diff"]   # the control
    assert max(abs(x) for x in runs["colour"]) < 0.02, runs["colour"]     # "less than two points on every seed"
    clean_mean = g["clean_acc_mean"]
    assert g["adabn_acc_blur"] <= clean_mean - 0.2 and g["adabn_acc_noise"] <= clean_mean - 0.2, g["adabn_acc_by_kind"]
    # one-class AdaBN "drops" below no adaptation on average; how clearly is a glued verdict over the seeds
    one, none = g["adabn_one_class_runs"], g["adabn_one_class_no_adaptation_runs"]
    assert len(one) == len(none) == n_seeds and g["adabn_one_class_acc"] < g["adabn_one_class_no_adaptation_acc"], (one, none)
    assert g["adabn_one_class_vs_none_words"] == AS_WORDS[verdict(one, none)], (one, none)
    # 3. greyscale: the summed filters reproduce the RGB network exactly; adapting beats re-initialising
    assert g["grey_mean_conv_max_abs_diff"] < 1e-4
    fc, fr = g["first_conv_adapt_vs_reinit"], g["first_conv_runs"]
    assert all(len(v) == n_seeds for v in fr.values()), fr
    assert min(fc["sum"], fc["copy"]) >= fc["reinit"] + 0.2, fc            # means over the seeds
    for mode in ("sum", "copy"):
        assert g[f"grey_{mode}_vs_reinit_words"] == AS_WORDS[verdict(fr[mode], fr["reinit"])], fr
    assert abs(fc["sum"] - fc["copy"]) <= 0.05, fc                         # "within five points of the sum on average"
    # 4. the decision matrix: n_seeds runs per cell
    acc, mruns = g["decision_matrix_acc"], g["decision_matrix_runs"]
    strong = f"texture {g['matrix_strong_severity']}"
    small, large = g["matrix_smallest_size"], g["matrix_largest_size"]
    assert set(acc) == {"no shift", strong, "dissimilar task"}, acc
    assert all(len(v) == n_seeds for c in mruns.values() for a in c.values() for v in a.values()), mruns
    # the dissimilar task is dissimilar for this backbone: a probe at the same images per class, every seed
    assert g["probe_acc_dissimilar_max"] < g["probe_acc_target_a_min"] - 0.2, (g["probe_acc_dissimilar_max"], g["probe_acc_target_a_min"])
    assert g["mmd_source_dissimilar"] > g["mmd_source_target_a"] > g["mmd_source_source"] + 0.05
    assert g["mmd_dissimilar_vs_target_a_word"] == "larger"
    # scratch is far behind on target_a, with or without the overlay (every seed)
    for cond in ("no shift", strong):
        for n, r in mruns[cond].items():
            best_transfer = [max(v) for v in zip(r["feature extraction"], r["full fine-tune"])]
            assert all(t >= sc + 0.2 for t, sc in zip(best_transfer, r["scratch"])), (cond, n, r)
    # without a shift, feature extraction is the best strategy or within noise of it
    for n, r in mruns["no shift"].items():
        assert not all(f > e for f, e in zip(r["full fine-tune"], r["feature extraction"])), (n, r)
    # dissimilar task, most data: feature extraction behind both full fine-tuning and scratch (which of
    # those two wins, and whether clearly, is a glued verdict, checked below); no negative transfer: a
    # pretrained start is ahead on some seed at every size
    r = mruns["dissimilar task"][large]
    assert acc["dissimilar task"][large]["feature extraction"] < min(acc["dissimilar task"][large]["full fine-tune"],
                                                                      acc["dissimilar task"][large]["scratch"]), r
    assert g["dissimilar_transfer_minus_scratch_large_max"] > 0 and g["dissimilar_transfer_minus_scratch_small_max"] > 0
    # the grid's "fine-tune the whole network, or train from scratch", with the most data, against the winners
    grid_ok = all(g[f"best_large_{k}"] in ("full fine-tune", "scratch") for k in ("strong", "dissimilar"))
    assert g["grid_large_different"] == ("agrees" if grid_ok else "disagrees"), g["grid_large_different"]
    # the danger zone (little data, dissimilar): feature extraction is the worst of the three
    dz = acc["dissimilar task"][small]
    assert dz["feature extraction"] < min(dz["full fine-tune"], dz["scratch"]), dz   # "the worst choice of the three"
    # ... and whether clearly so (both sizes): the glued words follow the course's noise rule
    for size_name, n in (("small", small), ("large", large)):
        r = mruns["dissimilar task"][n]
        clearly = all(verdict(r["feature extraction"], r[s]) == "below" for s in ("full fine-tune", "scratch"))
        assert g[f"fe_{size_name}_dissimilar_words"].startswith("behind both, clearly" if clearly else "behind both on average"), r
    # the textbook's danger-zone advice: an earlier block helps on the dissimilar task (every seed), not under the overlay
    probes = g["danger_probe_by_block"]
    assert g["danger_dissimilar_best_block"] != "layer4" and g["danger_dissimilar_best_minus_layer4_min"] > 0, probes
    assert g["danger_strong_best_block"] == "layer4", probes
    # 5. CKA on 4 x 4 pooled maps: the stem changes least, the top changes more under the strong shift
    cka, ckr = g["cka_by_block"], g["cka_runs"]
    for cond, by_block in cka.items():
        assert by_block["conv1"] >= by_block["layer4"], (cond, by_block)              # means over the seeds
        assert all(len(v) == n_seeds for v in ckr[cond].values()), ckr
    v = verdict(ckr[strong]["layer4"], ckr["no shift"]["layer4"])
    assert g["cka_layer4_verdict"] == v and g["cka_layer4_words"].startswith(
        {"below": "the larger shift changed the late blocks more", "within noise": "within noise",
         "above": "the larger shift changed the late blocks less"}[v]), (ckr, g["cka_layer4_words"])
    # the glued verdicts say what the seeds say, in both profiles: each cell's named best strategy has the
    # highest mean, and "ahead of the runner-up on every seed" is written exactly when it beat it on every seed
    for size_name, n in (("small", small), ("large", large)):
        for cond_name, cond in (("noshift", "no shift"), ("strong", strong), ("dissimilar", "dissimilar task")):
            cell, runs = acc[cond][n], mruns[cond][n]
            (first, _), (second, _) = sorted(cell.items(), key=lambda kv: -kv[1])[:2]
            clear = verdict(runs[first], runs[second]) == "above"
            assert g[f"best_{size_name}_{cond_name}"] == first and g[f"best_{size_name}_{cond_name}_clear"] is clear, (cond, n, cell)
            assert g[f"verdict_{size_name}_{cond_name}"].startswith("clearly ahead of" if clear else "within noise"), (cond, n)
    # the sentences the chapter scopes to the book's run: in `ci` their glued words must still match the numbers
    for words, diff in (("doubling_scratch_words", "doubling_gain_scratch"), ("doubling_ftall_words", "doubling_gain_ftall"),
                        ("deeper_ft_gain_strongest_words", "deeper_ft_gain_strongest")):
        assert _words_say(g[words], g[diff], "higher", "lower", "no different"), (words, g[words], g[diff])
    if profile == "full":   # the book's budgets; the chapter states these for the book's numbers
        # the budgets are enough: doubling them changes the accuracy by less than three points
        assert abs(g["doubling_gain_scratch"]) < 0.03 and abs(g["doubling_gain_ftall"]) < 0.03, g["convergence"]
        # under the strong overlay, with the most data, full fine-tuning beats feature extraction on every seed
        assert g["deeper_ft_gain_strongest_min"] > 0, g["deeper_ft_gain_runs"]
        assert g["best_large_strong"] == "full fine-tune" and g["best_large_strong_clear"] is True, acc[strong]
    for fig in ("fig_shift_examples", "fig_severity_sweep", "fig_decision_matrix", "fig_convergence", "fig_cka",
                "fig_danger_probe_by_block"):
        assert g[fig] == "figure", fig


# (no extra seed: the ci run already repeats every comparison over n_seeds >= 2 seeds)


def check_strategies(g: dict, profile: str) -> None:
    from tlutils.strategies import AS_WORDS, STRATEGIES, verdict

    chance, n, sizes = g["chance"], g["n_seeds"], g["sizes"]
    small, large = min(sizes), max(sizes)
    assert n >= (3 if profile == "full" else 2), n
    acc = g["acc_by_size_and_strategy"]
    assert list(acc) == list(STRATEGIES) and all(sorted(v) == sorted(sizes) for v in acc.values()), acc
    assert all(len(runs) == n for v in acc.values() for runs in v.values()), acc

    def said(name, a, b):   # a glued verdict (and its words) is the one the seeds give
        v = verdict(a, b)
        assert g[name] == v and g[f"{name}_words"] == AS_WORDS[v], (name, g[name], a, b)
        return v

    # transfer beats scratch with little data, at every seed and by a wide margin
    assert said("fe_vs_scratch_smallest", acc["feature extraction"][small], acc["scratch"][small]) == "above"
    assert g["fe_minus_scratch_smallest_points"] >= 30, g["fe_minus_scratch_smallest_points"]
    said("scratch_vs_fe_largest", acc["scratch"][large], acc["feature extraction"][large])
    gap = {m: sum(acc["feature extraction"][m]) / n - sum(acc["scratch"][m]) / n for m in (small, large)}
    assert gap[large] <= gap[small] - 0.2, gap                          # "the gap closes fast as the data grows"
    # scratch's budget was enough: twice the steps changes its accuracy by no more than the seeds' spread (or 3 points)
    for size, c in g["scratch_control"].items():
        assert abs(c["twice the budget"] - c["budget"]) <= max(0.03, c["spread over seeds"]), (size, c)
    # crossovers, as the seeds give them
    for pair, text in g["crossovers"].items():
        a, b = pair.split(" vs ")
        start = next((s for i, s in enumerate(sizes) if all(verdict(acc[a][m], acc[b][m]) != "below" for m in sizes[i:])), None)
        assert text == (f"from {start} per class" if start is not None else "not within the sizes tried"), (pair, text)
    # fine-tuning after the probe: the counts the chapter gives
    vs = [verdict(acc[st][m], acc["feature extraction"][m]) for st in ("fine-tune top", "full fine-tune") for m in sizes]
    assert g["n_ft_comparisons"] == len(vs) == 2 * len(sizes)
    assert (g["n_ft_above_probe"], g["n_ft_within_noise_of_probe"], g["n_ft_below_probe"]) == (
        vs.count("above"), vs.count("within noise"), vs.count("below")), vs
    # "did not always beat the probe"; "with little data the probe is often as good as fine-tuning"
    assert g["n_ft_above_probe"] <= g["n_ft_comparisons"] / 2, vs
    # cost: feature extraction trains the head only
    params = g["trainable_params_by_strategy"]
    assert params["feature extraction"] * 20 < params["fine-tune top"] < params["full fine-tune"], params
    # head design: pooling for "what", flatten for "where"
    hd = g["head_design"]
    said("pool_vs_flatten_target_a", hd["target_a"]["global average pooling"], hd["target_a"]["flatten"])
    said("flatten_vs_pool_dissimilar", hd["dissimilar"]["flatten"], hd["dissimilar"]["global average pooling"])
    assert g["pool_vs_flatten_target_a"] != "below" and g["flatten_vs_pool_dissimilar"] == "above", hd
    # preprocessing: the wrong statistics cost accuracy, raw pixels most; the task's own statistics cost little
    acc_norm = g["probe_acc_by_norm"]
    right = acc_norm["pretrained (model card)"]
    for short, name in (("imagenet", "ImageNet statistics"), ("none", "none (raw pixels)"), ("own", "own dataset statistics")):
        said(f"wrong_norm_{short}_vs_right", acc_norm[name], right)
    assert g["wrong_norm_imagenet_vs_right"] == g["wrong_norm_none_vs_right"] == "below", acc_norm
    assert g["wrong_norm_cost_none_points"] >= 30 and g["wrong_norm_cost_imagenet_points"] >= 3, g["wrong_norm_cost"]
    assert abs(g["wrong_norm_cost_own_points"]) <= 3, g["wrong_norm_cost"]
    assert g["serve_acc_none"] <= chance + 0.05, g["serve_mismatch_acc"]                 # "chance for ten classes"
    assert g["serve_acc_imagenet"] <= g["serve_acc_right"] - 0.2, g["serve_mismatch_acc"]
    # LR range test after the probe (BN frozen); the min/10 rule itself is a unit test (test_recipes.py)
    res = g["lr_results"]
    said("onecycle_vs_constant_suggestion", res["1cycle at the suggestion"]["target"], res["constant at the suggestion"]["target"])
    said("onecycle_vs_constant_minimum", res["1cycle at the loss minimum"]["target"], res["constant at the loss minimum"]["target"])
    said("minimum_vs_suggestion_constant", res["constant at the loss minimum"]["target"], res["constant at the suggestion"]["target"])
    said("minimum_vs_suggestion_source", res["constant at the loss minimum"]["source"], res["constant at the suggestion"]["source"])
    # after the probe the curve has no valley; at the suggestion no run loses the source task; at the same
    # peak, 1cycle never does worse than the constant rate (paired by seed, within 2 points)
    assert g["lr_finder_max_loss_drop"] <= 0.5, g["lr_finder_loss_drop"]
    start_lr = 1e-5                                                      # the lab's lr_find(start_lr=...)
    assert any(m <= 1.5 * start_lr for m in g["lr_finder_min"]), g["lr_finder_min"]   # "at or next to the first rate"
    src0 = g["source_acc_pretrained"]
    at_sugg = [a for name, r in res.items() if "suggestion" in name for a in r["source"]]
    assert g["lr_source_lowest_at_suggestion"] == min(at_sugg) >= src0 - 0.02, (res, src0)
    for rate in ("suggestion", "loss minimum"):
        one, const = res[f"1cycle at the {rate}"], res[f"constant at the {rate}"]
        assert all(o >= c - 0.02 for o, c in zip(one["target"], const["target"])), (rate, one, const)
    for sched, key in (("constant", "constant"), ("1cycle", "onecycle")):
        r = res[f"{sched} at the loss minimum"]
        assert g[f"lr_minimum_{key}_lowest_target"] == min(r["target"]) and g[f"lr_minimum_{key}_lowest_source"] == min(r["source"])
    # augmentation with BN frozen: the blur's cost is the augmentation's own
    aa = g["augmentation_acc"]
    said("flipshift_vs_none", aa["flip + shift, BN frozen"], aa["none, BN frozen"])
    said("blur_vs_none", aa["strong blur, BN frozen"], aa["none, BN frozen"])
    said("blur_vs_none_bn_train", aa["strong blur, BN in train mode"], aa["none, BN in train mode"])
    assert g["blur_vs_none"] == "below" and g["aug_cost_blur_points"] >= 10, aa
    # "BN in train mode already costs accuracy without any augmentation"
    assert verdict(aa["none, BN in train mode"], aa["none, BN frozen"]) == "below", aa
    # imbalance, on every seed: plain training ignores the rare classes; weighted sampling recovers part
    # of them, at a cost to the frequent ones
    runs = g["imbalance_runs"]
    plain, weighted = runs["no reweighting"], runs["weighted sampling"]
    assert len(plain["rare classes"]) == g["n_seeds"], runs
    for i in range(g["n_seeds"]):
        assert plain["frequent classes"][i] >= 0.85 and plain["rare classes"][i] <= 0.25, (i, runs)
        assert plain["rare classes"][i] <= plain["frequent classes"][i] - 0.6, (i, runs)
        assert weighted["rare classes"][i] >= plain["rare classes"][i] + 0.15, (i, runs)
        assert weighted["frequent classes"][i] < plain["frequent classes"][i], (i, runs)
    # balanced accuracy: higher on average; the chapter glues on how many seeds it rose
    rose = sum(w > p for w, p in zip(weighted["balanced accuracy"], plain["balanced accuracy"]))
    assert g["balanced_acc_rose_on"] == rose >= 1 and g["balanced_acc_weighted"] > g["balanced_acc_plain"], runs
    assert g["rare_recall_plain"] == round(sum(plain["rare classes"]) / g["n_seeds"], 4), g["rare_recall_plain"]
    # monitoring, on every seed's fresh images: MMD flags the shift and not the clean batch, entropy
    # rises but stays small, accuracy (unseen in production) falls
    m = g["monitoring_runs"]
    clean, shifted = m["clean"], m["contrast drop"]
    for i in range(g["n_seeds"]):
        assert shifted["feature MMD^2"][i] >= clean["feature MMD^2"][i] + 0.05, (i, m)
        assert shifted["permutation p-value"][i] <= 0.05 < clean["permutation p-value"][i], (i, m)
        assert clean["mean prediction entropy"][i] < shifted["mean prediction entropy"][i] <= 0.2, (i, m)
        assert shifted["accuracy (needs labels)"][i] <= clean["accuracy (needs labels)"][i] - 0.3, (i, m)
    assert g["mmd_p_clean_min"] == round(min(clean["permutation p-value"]), 4), (g["mmd_p_clean_min"], m)
    assert g["mmd_p_shifted_max"] == round(max(shifted["permutation p-value"]), 4), (g["mmd_p_shifted_max"], m)
    assert g["entropy_shifted_max"] == round(max(shifted["mean prediction entropy"]), 4), (g["entropy_shifted_max"], m)
    assert g["acc_shifted_incoming"] <= g["acc_clean_incoming"] - 0.3, g["monitoring"]
    for fig in ("fig_sizes", "fig_scratch_curve", "fig_cost", "fig_lr_find", "fig_onecycle", "fig_recall"):
        assert g[fig] == "figure", fig
