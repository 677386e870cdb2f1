"""One-off helper (issue 17): insert {lab-figure} blocks after anchor lines, rewording nothing.
Kept for the lead to re-apply on rewritten chapters: python tests/_dev/insert_figures.py"""
from pathlib import Path

F = "../labs/{lab}.ipynb::{key}"
def g(lab, key, fmt):
    return f"{{glue:text}}`../labs/{lab}.ipynb::{key}:{fmt}`"

FIGS = {
 "chapters/forgetting.md": [
  ("not recover.", "forgetting", "fig_curves",
   "Target and source validation accuracy by epoch after the probe for the naive fine-tune, the fix, gradual unfreezing and L2-SP, with chance levels dashed",
   f"Target (left) and source (right) validation accuracy after the probe, from the lab. The naive run drops to {g('forgetting','collapse_val_acc','.1%')} on the target and {g('forgetting','source_acc_after_collapse','.1%')} on the source task; the fix ends at {g('forgetting','fixed_val_acc','.1%')} and {g('forgetting','source_acc_after_fix','.1%')}."),
  ("an order of magnitude, stop and lower the learning rate before the damage is done.", "forgetting", "fig_grad_norms",
   "Gradient L2 norm per block and step, log scale, for the naive run and the fix",
   f"Gradient norms per block and step (log scale). The naive run's backbone peaks at {g('forgetting','naive_peak_grad_norm','.3g')}; the fix's median is {g('forgetting','fixed_median_grad_norm','.3g')}."),
  ("is a warning sign.", "forgetting", "fig_drift",
   "Bar chart of the relative weight change of each backbone block, log scale, naive run against the fix",
   f"Relative weight change per block at the end of training (log scale): `layer4` moves by {g('forgetting','drift_naive_layer4','.1%')} of its norm in the naive run and {g('forgetting','drift_fix_layer4','.1%')} with the fix."),
 ],
 "chapters/feature_hierarchy.md": [
  ("that shaped it.", "feature_hierarchy", "fig_filters",
   "The 16 first-layer filters of the pretrained backbone, nearly grey, next to the colourful filters of a random initialisation",
   f"First-layer filters, pretrained (left) and random (right). The colour-blind share of their energy is {g('feature_hierarchy','filter_luminance_pretrained','.0%')} against {g('feature_hierarchy','filter_luminance_random','.0%')}."),
  ("work on ever coarser grids (16×16, 8×8, 4×4) and respond to the object as a whole.", "feature_hierarchy", "fig_activation_maps",
   "Four validation images and the mean activation map of every block, from the stem to layer4",
   "Activation maps of every block for four validation images, from the lab."),
  ("  of the ideas, not as a measurement of their size.", "feature_hierarchy", "fig_transfer_curves",
   "Accuracy against the number k of copied blocks for frozen, fine-tuned and self-transfer copies, mean and spread over seeds",
   f"Transfer curves over *k*, the number of copied blocks, mean and spread over {g('feature_hierarchy','n_seeds','d')} seeds. With all blocks copied: frozen {g('feature_hierarchy','frozen_all_acc','.1%')}, fine-tuned {g('feature_hierarchy','finetuned_all_acc','.1%')}."),
  ("simply from the *scale* of the pretrained weights rather than from the features.", "feature_hierarchy", "fig_cka",
   "Linear CKA between pretrained and fine-tuned blocks, and probe accuracy per block before and after fine-tuning",
   f"CKA per block, pretrained against fine-tuned ({g('feature_hierarchy','cka_first','.3f')} for the stem, {g('feature_hierarchy','cka_last','.3f')} for `layer4`), and probe accuracy per block."),
 ],
 "chapters/strategies.md": [
  ("four curves.", "strategies", "fig_sizes",
   "Validation accuracy against training images per class for feature extraction, partial and full fine-tuning and training from scratch",
   f"Accuracy by training-set size and strategy on the `dissimilar` task, from {g('strategies','smallest_size','d')} to {g('strategies','largest_size','d')} images per class."),
 ],
 "chapters/recipes.md": [
  ("pretrained features (the forgetting chapter's collapse).", "strategies", "fig_lr_find",
   "Smoothed training loss against the learning rate on a log axis, with the suggestion, the steepest descent and the minimum marked",
   f"The LR range test from the strategies lab: the loss minimum at {g('strategies','lr_finder_min','.3g')}, the suggestion at {g('strategies','lr_finder_suggestion','.3g')}."),
  ("`fit(..., lr=finder.suggestion, schedule=\"onecycle\")`.", "strategies", "fig_onecycle",
   "Training loss and validation accuracy by epoch for 1cycle and constant learning rates",
   f"Training loss and validation accuracy by epoch: 1cycle ends at {g('strategies','onecycle_acc','.1%')}, the constant rate at the same value at {g('strategies','constant_acc','.1%')}, the constant rate at the loss minimum at {g('strategies','acc_at_loss_minimum','.1%')}."),
 ],
 "chapters/batchnorm.md": [
  ("staying flat with `freeze_bn`.", "batchnorm", "fig_bn_drift",
   "Per-layer drift of the BatchNorm running means during head training, rising in train mode and flat with freeze_bn",
   f"Running-mean drift of every BN layer while the head trains, in train mode and with `freeze_bn`. Source accuracy afterwards: {g('batchnorm','source_acc_frozen_bn_train','.1%')} in train mode, {g('batchnorm','source_acc_frozen_bn_eval','.1%')} with `freeze_bn`."),
  ("(the figure is on the lab page).", "batchnorm", "fig_one_image",
   "One source image and the probability of its true class in each of many random batches, in train mode, against eval mode",
   f"One image in random batches of 32: correct in {g('batchnorm','one_image_frac_correct_train_mode','.0%')} of them, with {g('batchnorm','one_image_n_distinct_predictions','d')} different labels."),
  ("{glue:text}`../labs/batchnorm.ipynb::sweep_steps_b64:d` of them.", "batchnorm", "fig_batch_size",
   "Accuracy against batch size: the pretrained model evaluated in train mode, and fine-tuning with BN in train mode or frozen",
   f"Left: source accuracy in train mode by evaluation batch size. Right: target accuracy after fine-tuning by training batch size, {g('batchnorm','acc_bn_train_b1','.1%')} (train-mode BN) and {g('batchnorm','acc_frozen_bn_b1','.1%')} (frozen) at batch size 1."),
 ],
 "chapters/domain_shift.md": [
  ("and each of them ({glue}`../labs/domain_shift.ipynb::spearman_mmd_by_kind` for MMD). At", None, None, None, None),
 ],
}
# the domain-shift anchors (after paragraphs, not inside them)
FIGS["chapters/domain_shift.md"] = [
  ("easier problem.", "domain_shift", "fig_severity_sweep",
   "Classifier accuracy, feature MMD and probe accuracy against shift severity for every shift kind",
   f"Accuracy, MMD and probe accuracy by severity. At severity 5, MMD reaches {g('domain_shift','mmd_noise_sev5','.2f')} for noise and {g('domain_shift','mmd_contrast_sev5','.2f')} for contrast."),
  ("only if its features see it, which is why MMD is computed on features and not on pixels.", "domain_shift", "fig_shift_examples",
   "A grid of one source image under every shift kind at growing severity",
   "One image under every shift kind and severity, from the lab."),
  ("runner-up. The winners and margins:", "domain_shift", "fig_decision_matrix",
   "Heatmap of the winning strategy per dataset size and shift, shaded by its margin over the runner-up",
   f"The decision matrix, measured: rows from {g('domain_shift','matrix_smallest_size','d')} to {g('domain_shift','matrix_largest_size','d')} images per class, columns from no shift to the dissimilar task."),
]
FIGS["intro.md"] = []  # written by hand


def block(lab, key, alt, caption):
    return (f"\n```{{lab-figure}} {F.format(lab=lab, key=key)}\n:alt: {alt}\n\n{caption}\n```\n")


for path, figs in FIGS.items():
    p = Path(path)
    lines = p.read_text().split("\n")
    for anchor, lab, key, alt, caption in figs:
        if any(l.startswith("```{lab-figure}") and l.endswith(f"/{lab}.ipynb::{key}") for l in lines):
            continue  # already there
        hits = [i for i, l in enumerate(lines) if l.rstrip() == anchor.rstrip() or l.rstrip().endswith(anchor.strip())]
        assert len(hits) == 1, (path, anchor, hits)
        i = hits[0]
        assert lines[i + 1] == "", (path, anchor, "not the end of a paragraph")
        if path.startswith("chapters/") or path == "intro.md":
            text = block(lab, key, alt, caption)
            if path == "intro.md":
                text = text.replace("../labs/", "labs/")
            lines[i + 1:i + 1] = text.rstrip("\n").split("\n")[0:]
    p.write_text("\n".join(lines))
    print(path, len(figs))
