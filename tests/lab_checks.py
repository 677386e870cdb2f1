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
