"""``python -m xaikit demo``: the whole story on the shipped sample data, written as an HTML report.

The demo is a list of stages (a registry, like the methods elsewhere in the kit); each stage adds one section
to the :class:`~xaikit.report.Report` and may leave results in the shared context for later stages.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tqdm.auto import tqdm

from ._registry import Registry
from .errors import DatasetError
from .report import Report

if TYPE_CHECKING:  # annotations only: pandas is imported where a table is built
    pass

__all__ = ["STAGES", "DemoContext", "register_stage", "run_demo"]


@dataclass
class DemoContext:
    """What stages share: the sample folder, the SMOKE flag and results handed from stage to stage."""

    samples: Path
    smoke: bool = False
    results: dict[str, Any] = field(default_factory=dict)


Stage = Callable[[DemoContext, Report], None]

#: Demo stages in the order they run: name -> function.
STAGES: Registry[Stage] = Registry("demo stage")


def register_stage(name: str) -> Callable[[Stage], Stage]:
    """Decorator adding a stage to :data:`STAGES` (in definition order)."""
    return STAGES.register(name)


@register_stage("data")
def _data_stage(ctx: DemoContext, report: Report) -> None:
    from .data import ManifestDataset, audit
    from .io import read_image
    from .phantom import grid_image
    from .viz.audit import audit_figures
    from .viz.image import image_view

    report.section(
        "1. Data: loading and auditing the sample set",
        "Phantom chest radiographs drawn by xaikit.phantom, with ground-truth masks; the audit looks for "
        "confounds a model could learn instead of the disease.",
    )
    # 160 px thumbnails: the page shows the grid 640 px wide (224 px added 0.23 MB of phantom noise to the report)
    report.image(grid_image(16, seed=0, size=160), "phantom_grid",
                 caption="16 phantom radiographs (normal, pneumonia with patchy opacities, some with a corner marker).")
    dataset = ManifestDataset(ctx.samples / "manifest.csv")
    ctx.results["dataset"] = dataset
    counts = dataset.table.groupby(["split", "label"]).size().rename("n_images").reset_index()
    report.table(counts, "class_counts", caption="Images per split and class.")
    table = audit(dataset)
    report.table(table, "audit", caption="Audit: one row per check (effect sizes, p-values, flags).")
    for name, fig in audit_figures(table).items():
        report.figure(fig, f"audit_{name}")
    dicom = read_image(ctx.samples / "dicom" / "cxr_monochrome1.dcm")
    (h, w), (sy, sx) = dicom.shape, dicom.spacing[-2:]
    report.figure(image_view(dicom, title="DICOM MONOCHROME1, default window (inverted on read)"), "dicom_example",
                  caption=f"A {dicom.modality} DICOM file of {w} x {h} pixels ({sx:.2f} x {sy:.2f} mm each), shown "
                  f"with its default window (centre {dicom.window[0]:.4g}, width {dicom.window[1]:.4g}); its "
                  f"de-identified metadata keys include {', '.join(sorted(dicom.meta)[:8])}.")


def _shipped_model(ctx: DemoContext, name: str = "clean"):
    from .checkpoint import load_checkpoint
    from .samples import MODELS

    key = f"model_{name}"
    if key not in ctx.results:
        path = ctx.samples / "models" / MODELS[name]
        if not path.is_file():
            raise DatasetError(f"{path}: the sample model is missing. Run `python -m xaikit samples` to train it.")
        ctx.results[key] = load_checkpoint(path)
    return ctx.results[key]


@register_stage("training")
def _training_stage(ctx: DemoContext, report: Report) -> None:
    from .data import ManifestDataset
    from .viz.training import training_curves

    ckpt = _shipped_model(ctx)
    report.section(
        "2. Training and evaluation of the sample model",
        f"A {ckpt.arch} trained by `python -m xaikit samples` on the phantom training split, with the Preprocess "
        f"{ckpt.preprocess.to_dict()} stored in its checkpoint. Metrics on the held-out test split, with 95% CIs "
        "from a bootstrap over patients.",
    )
    from .train import assess

    test = ManifestDataset(ctx.samples / "manifest.csv", split="test", preprocess=ckpt.preprocess)
    # the decision threshold chosen on the validation split when the model was built (never on the test split)
    threshold = float(ckpt.summary.get("decision_threshold", 0.5))
    ev = assess(ckpt.model, test, threshold=threshold, n_boot=200 if ctx.smoke else 1000, seed=0)
    ctx.results["evaluation"] = ev
    report.table(ev.metrics, "test_metrics",
                 caption=f"Test-split metrics at the threshold {threshold:.2f} chosen on the "
                 "validation split (value, 95% patient-bootstrap CI).")
    report.figure(ev.plot_confusion(), "confusion_matrix", caption=f"Confusion matrix at threshold {threshold:.2f}.")
    report.figure(ev.plot_roc(), "roc", caption="ROC curve with a bootstrap band.")
    report.figure(ev.plot_reliability(), "reliability", caption="Reliability diagram (calibration).")
    history = ckpt.summary.get("history")
    if history:
        import pandas as pd

        report.figure(training_curves(pd.DataFrame(history)), "training_history", caption="Training history.")


@register_stage("saliency")
def _saliency_stage(ctx: DemoContext, report: Report) -> None:
    import torch

    from .data import ManifestDataset
    from .saliency import explain_many
    from .viz.saliency import method_grid

    ckpt = _shipped_model(ctx)
    test = ManifestDataset(ctx.samples / "manifest.csv", split="test", preprocess=ckpt.preprocess)
    rows = test.table.index[test.labels == 1][: 2 if ctx.smoke else 4]
    samples = [test[int(i)] for i in rows]
    x = torch.stack([s["image"] for s in samples])
    results = explain_many(ckpt.model, x, "quick", image_ids=[s["id"] for s in samples],
                           labels=[s["label"] for s in samples], progress=False)
    ctx.results["saliency"] = (x, results)
    report.section(
        "3. Saliency: the quick preset on pneumonia test images",
        "Signed maps (red: for the predicted class, blue: against; transparent where the map is zero), "
        "normalized for display only.",
    )
    from .domain import assess_domain

    report.figure(method_grid(x, results, class_names=ckpt.classes, domain_distances=assess_domain(ckpt.model, x)),
                  "method_grid", caption="Rows: images (id, true class, predicted class and its probability, whether "
                  "the image lies in the model's training domain); columns: methods. "
                  "Opacity follows |relevance|; Grad-CAM-like maps without negative values get a one-sided scale.")
    prov = [{"method": k, "target_policy": e.target_policy, "reduction": e.reduction,
             "params": ", ".join(f"{p}={v}" for p, v in e.params.items() if not isinstance(v, (dict, list)))}
            for k, e in results.items()]
    import pandas as pd

    report.table(pd.DataFrame(prov), "saliency_provenance", caption="Provenance of every map.")


def _test_batch(ctx: DemoContext, ckpt):
    """Balanced test-split batch of the clean model (6 per class in SMOKE mode, else the whole split)."""
    from .data import ManifestDataset, balanced_batch

    test = ManifestDataset(ctx.samples / "manifest.csv", split="test", preprocess=ckpt.preprocess)
    return balanced_batch(test, 6 if ctx.smoke else None)


#: Saliency methods of the region and statistics stages (the SMOKE run keeps the first two).
_STATS_METHODS = {"gradient": {"method": "gradient"}, "gradcam": {"method": "gradcam"},
                  "integrated_gradients": {"method": "integrated_gradients", "n_steps": 16}}


def _region_scores(ctx: DemoContext):
    """Region scores of the clean model's maps on each test image's lung zones (computed once per run)."""
    if "region_scores" in ctx.results:
        return ctx.results["region_scores"]
    from .regions import lung_zones, region_scores
    from .saliency import explain_many

    ckpt = _shipped_model(ctx)
    batch = _test_batch(ctx, ckpt)
    methods = dict(list(_STATS_METHODS.items())[: 2 if ctx.smoke else 3])
    maps = explain_many(ckpt.model, batch.images, methods, target=1, image_ids=batch.image_ids,
                        labels=batch.labels, progress=False)
    zones = lung_zones(**batch.masks("left_lung", "right_lung", "heart", "body"))
    scores = region_scores(maps, zones, patient_ids=batch.patient_ids)
    scores["label"] = scores["label"].map(dict(enumerate(batch.classes)))
    ctx.results["region_scores"] = (batch.images, zones, scores)
    return ctx.results["region_scores"]


@register_stage("regions")
def _regions_stage(ctx: DemoContext, report: Report) -> None:
    from .stats import describe
    from .viz.regions import region_overlay

    x, zones, scores = _region_scores(ctx)
    report.section(
        "4. Regions: relevance per anatomical zone",
        "Lung zones built from each test image's own lung masks (left/right x upper/middle/lower, heart, "
        "mediastinum, outside the body, border, corners); maps explained for the pneumonia logit, scored with "
        "the positive sign policy. density_ratio = mass_frac / area_frac (1: no more relevance than the area).",
    )
    report.figure(region_overlay(x[0, 0], zones, index=0, title="Lung zones of one test image"), "region_overlay",
                  caption="Regions follow each image's anatomy (toggle them in the legend).")
    table = describe(scores, "density_ratio", by=("method", "region"))
    report.table(table, "region_density", caption="Density ratio per method and region: mean with a 95% t-interval.")


@register_stage("statistics")
def _statistics_stage(ctx: DemoContext, report: Report) -> None:
    import pandas as pd

    from .stats import compare_groups, correct, region_enrichment
    from .viz.stats import effect_heatmap, forest_plot

    _, _, scores = _region_scores(ctx)
    n_boot = 200 if ctx.smoke else 1000
    lungs = scores[scores["region"].str.contains("_upper|_middle|_lower|heart")]
    groups = compare_groups(lungs, "label", value="mass_frac", aggregate="patient", n_boot=n_boot, seed=0)
    enrichment = region_enrichment(lungs, aggregate="patient", n_boot=n_boot, seed=0)
    family = correct(pd.concat([groups, enrichment], ignore_index=True), "holm")
    report.section(
        "5. Statistics: one family of tests",
        "Per method and zone: normal vs pneumonia mass fraction (Mann-Whitney on per-patient means, "
        "rank-biserial effect with a bootstrap CI) and enrichment (Wilcoxon on the log density ratio); "
        f"all {len(family)} tests form one Holm family.",
    )
    cols = ["family", "method", "region", "group_a", "group_b", "n_a", "n_b", "effect_size", "effect_name",
            "ci_low", "ci_high", "p_raw", "p_adj", "significant"]
    report.table(family[cols], "statistics_tests", caption="Tests (raw and Holm-adjusted p, effect sizes, CIs).",
                 max_rows=60)
    report.figure(forest_plot(family[family["family"] == "compare_groups"]), "statistics_forest",
                  caption="Class comparison per method and zone: effect with CI; filled = significant after Holm.")
    # the marks come from the one family above (the table's p_adj), never from a per-table correction
    report.figure(effect_heatmap(family[family["family"] == "region_enrichment"]), "statistics_heatmap",
                  caption=f"Enrichment effect (rank-biserial) per method and zone; marks (* p_adj < .05, ** < .01, "
                  f"*** < .001) from the Holm family of all {len(family)} tests, as in the table.")


@register_stage("shortcut")
def _shortcut_stage(ctx: DemoContext, report: Report) -> None:
    import pandas as pd

    from .shortcut import lab_dataset, load_lab_models, shortcut_lab

    methods = {"gradient": {"method": "gradient"}} if ctx.smoke else None
    lab = shortcut_lab(load_lab_models(ctx.samples), lab_dataset(16 if ctx.smoke else 32), methods=methods,
                       n_boot=200 if ctx.smoke else 1000, seed=0)
    report.section(
        "6. The shortcut lab: catching a model that reads the marker",
        "The shortcut sample model was trained on phantoms where 90% of pneumonia and 5% of normal images carry "
        "a corner marker. Both models are explained on the same held-out pneumonia images that all carry it; "
        "regions come from each image's ground truth. Enrichment, lesion-lung vs other-lung and model-vs-model "
        "tests form one Holm family. The clean model may warn that some of these images are outside its training "
        "domain (OutOfDomainWarning): it never saw a marker, which is the point of the comparison.",
    )
    summary = pd.concat([lab.summary("marker"), lab.summary("lesion_lung")], ignore_index=True)
    report.table(summary, "shortcut_summary",
                 caption="Marker and lesion-lung enrichment per model (geometric-mean density ratio, effect, Holm p).")
    report.figure(lab.plot_forest(), "shortcut_forest", caption="Every test of the lab's family.")
    report.figure(lab.plot_boxplot(), "shortcut_boxplot",
                  caption="Density ratio per region and model (log scale; 1 = no more than the region's area).")


def _evaluation_setup(ctx: DemoContext):
    """Pneumonia test images with their lesion masks, the clean model's maps, and the metric settings."""
    import torch

    from .data import ManifestDataset, balanced_batch
    from .evaluation import randomizable_layers

    ckpt = _shipped_model(ctx)
    test = ManifestDataset(ctx.samples / "manifest.csv", split="test", preprocess=ckpt.preprocess)
    batch = balanced_batch(test, 4 if ctx.smoke else 16, classes=[1])  # pneumonia images only
    samples, x, lesions = batch.samples, batch.images, batch.masks("lesion")["lesion"]
    # the stages Adebayo et al. plot: weight layers (convolutions, the classifier), top first
    weights = [n for n in randomizable_layers(ckpt.model)
               if isinstance(ckpt.model.get_submodule(n), (torch.nn.Conv2d, torch.nn.Linear))]
    steps, patch = (8, 16) if ctx.smoke else (32, 8)
    metrics = {"deletion": {"patch": patch, "steps": steps}, "insertion": {"patch": patch, "steps": steps},
               "cascading_randomization": {"similarities": ["spearman_abs", "ssim"],
                                           "layers": weights[:3] if ctx.smoke else weights},
               "pointing_game": {}, "relevance_mass": {}, "sparseness": {},
               "max_sensitivity": {"n_samples": 2 if ctx.smoke else 5}}  # judged against a stated threshold
    if not ctx.smoke:
        metrics["faithfulness_correlation"] = {"n_runs": 50, "subset_size": 256}
    return ckpt, samples, x, lesions, metrics


@register_stage("evaluation")
def _evaluation_stage(ctx: DemoContext, report: Report) -> None:
    from .evaluation import ROBUSTNESS_THRESHOLDS, rank_methods, sanity_verdicts, score_many, summarize
    from .saliency import explain_many
    from .viz.evaluation import rank_heatmap

    ckpt, samples, x, lesions, metrics = _evaluation_setup(ctx)
    methods = dict(list(_STATS_METHODS.items())[: 2 if ctx.smoke else 3])
    maps = explain_many(ckpt.model, x, methods, target=1, image_ids=[s["id"] for s in samples], progress=False)
    table = score_many(ckpt.model, x, maps, metrics, masks=lesions, progress=False)
    n_boot = 200 if ctx.smoke else 1000
    summary = summarize(table, n_boot=n_boot)
    verdicts = sanity_verdicts(table, rank_methods(table, n_boot=n_boot))
    ctx.results["evaluation_scores"] = table
    ctx.results["evaluation_verdicts"] = verdicts
    report.section(
        "7. Which maps to trust",
        f"{len(samples)} pneumonia test images, maps for the pneumonia logit, scored on faithfulness (deletion and "
        "insertion of patches ranked by the map), robustness (max-sensitivity), the cascading model-parameter "
        "randomization check (Adebayo et al. 2018), localization against the ground-truth lesion masks and "
        "sparseness. Each verdict is judged against what means something for it (column judged_against): the "
        "random map is the floor of faithfulness and localization (paired tests, one Holm family); the "
        "model-independent random and Sobel maps are the reference of the randomization check; robustness is "
        f"judged against a stated threshold (max-sensitivity < {ROBUSTNESS_THRESHOLDS['max_sensitivity']:g}), "
        "never against a control, since a map that ignores its input is trivially stable. Sparseness describes "
        "the maps and gets no verdict. Every verdict is drawn in a figure below.",
    )
    report.table(verdicts, "evaluation_verdicts", caption="Which method fails which check, in plain words, and "
                 "what it was judged against.")
    cols = ["metric", "layer", "similarity", "method", "n", "mean", "ci_low", "ci_high", "rank"]
    report.table(summary[cols], "evaluation_summary", caption="Method x metric: mean, 95% bootstrap CI, rank "
                 "(1 = best; randomization: lower similarity is better; controls are not ranked on robustness and "
                 "sparseness).", max_rows=60)
    figures = [*_evaluation_figures(ckpt.model, x, maps, summary, verdicts, metrics),
               ("evaluation_ranks", rank_heatmap(summary),
                "Rank of each method on each metric (controls only where they are compared with).")]
    ctx.results["evaluation_figures"] = {name: fig for name, fig, _ in figures}
    for name, fig, caption in figures:
        report.figure(fig, name, caption=caption)


def _evaluation_figures(model, x, maps, summary, verdicts, metrics) -> list:
    """(name, figure, caption) drawing every verdict (:func:`xaikit.viz.evaluation.verdict_figures`)."""
    from .evaluation import curves
    from .viz.evaluation import verdict_figures

    sweep = curves(model, x, maps, patch=metrics["deletion"]["patch"], steps=metrics["deletion"]["steps"])
    captions = {
        "curves": "Deletion and insertion curves (mean over images); grey: the random (dotted) and Sobel (dashed) "
                  "controls, the floor the deletion and insertion verdicts compare with.",
        "cascading_randomization": "Similarity to the original maps as the model is randomized from the top layer "
                                   "down; grey: the model-independent random and Sobel maps (the reference), red "
                                   "dashed: the verdict's threshold."}
    figures = verdict_figures(summary, verdicts, sweep)
    out = []
    for name, fig in figures.items():
        basis = verdicts.loc[verdicts["check"] == name, "judged_against"]
        default = f"{name.replace('_', ' ')} per method with 95% bootstrap CIs; judged against: " \
                  f"{basis.iloc[0] if len(basis) else '-'}."
        out.append((f"evaluation_{name}", fig, captions.get(name, default)))
    return out


@register_stage("volumes")
def _volumes_stage(ctx: DemoContext, report: Report) -> None:
    import numpy as np
    import pandas as pd

    from .checkpoint import load_checkpoint
    from .io import read_volume
    from .saliency import PRESETS, explain
    from .samples import VOLUME_MODEL
    from .viz.volume import mip_view, three_plane_view

    path = ctx.samples / "models" / VOLUME_MODEL
    if not path.is_file():
        raise DatasetError(f"{path}: the 3D sample model is missing. Run `python -m xaikit samples` to train it.")
    ckpt = load_checkpoint(path)
    pre, nifti = ckpt.preprocess, ctx.samples / "nifti"
    ct = read_volume(nifti / "volume.nii.gz")
    x, _ = pre(ct)
    methods = {k: v for k, v in PRESETS["volume"].items() if not ctx.smoke or k in ("gradient", "gradcam")}
    exps = {label: explain(ckpt.model, x[None], target=1, preprocess=pre, **spec) for label, spec in methods.items()}
    metrics = pd.DataFrame(ckpt.summary["test_metrics"], index=["value", "ci_low", "ci_high"]).T
    report.section(
        "8. Volumes: a 3D classifier explained in three planes",
        f"The shipped {ckpt.arch} (lesion or not, phantom CT, {pre.to_dict()['shape']} voxels of "
        f"{pre.to_dict()['spacing']} mm) explained on the sample NIfTI volume with the 3D preset; maps scored per "
        "anatomical label and written back as NIfTI on the scan's own grid.",
    )
    report.table(metrics.reset_index(names="metric"), "volume_model_metrics",
                 caption="3D sample model, test split (value, 95% patient-bootstrap CI).")
    grid = pre.geometry(ct)  # the model grid's spacing and affine (superior up in coronal and sagittal panels)
    report.figure(three_plane_view(x[0], exps["gradcam"].maps[0], sign="positive", spacing=grid.out_spacing,
                                   affine=grid.out_affine, title="Grad-CAM, three planes"), "volume_gradcam_planes")
    report.figure(mip_view(exps["gradient"].maps[0], sign="absolute", volume=x[0], spacing=grid.out_spacing,
                           affine=grid.out_affine, title="Gradient, maximum-intensity projections"),
                  "volume_gradient_mip")
    _volume_region_scores(exps, ct, pre, nifti, report)
    # 16-bit scaled values: half the bytes of float32, within 1/65535 of each map's range (a display and region
    # file; the exact maps are the Explanation's)
    written = [pre.write_map(e.maps[0], ct, report.out_dir / f"volume_{label}.nii.gz", dtype=np.int16)
               for label, e in exps.items()]
    same = all(np.allclose(read_volume(p).affine, ct.affine) for p in written)
    report.text(f"Maps written as NIfTI over the source scan ({', '.join(p.name for p in written)}; 16-bit values "
                f"with NIfTI's scale factor); source affine kept: {same}.")


def _volume_region_scores(exps: dict, ct, pre, nifti: Path, report: Report) -> None:
    """Relevance per anatomical label of the sample volume, and why a method's rows may be empty."""
    from .regions import label_regions, region_scores

    regions = label_regions(nifti / "volume_labels.nii.gz", nifti / "labels.csv", image=ct, preprocess=pre)
    scores = region_scores(list(exps.values()), regions, sign="positive")
    report.table(scores[["method", "region", "n_voxels", "volume_mm3", "mass_frac", "density_ratio"]],
                 "volume_region_scores", caption="Relevance per anatomical label (voxels, mm^3, mass, density).")
    empty = sorted(set(scores["method"]) - set(scores.dropna(subset=["mass_frac"])["method"]))
    # under 1% of the map's absolute relevance positive: the rows share out a trace of a few voxels
    faint = sorted(e.method for e in exps.values() if e.method not in empty
                   and float(e.maps.clamp(min=0).sum()) < 0.01 * float(e.maps.abs().sum()))
    occlusion = ("Occlusion with uniform cubes raises the lesion score almost everywhere for this model (an "
                 "out-of-distribution perturbation); look at its map with sign='signed'.")
    if empty:
        report.text(f"{', '.join(empty)}: no positive relevance anywhere in the volume, so under the positive sign "
                    "policy there is no mass to share out and the rows are empty (NaN)"
                    + (f". {occlusion}" if any("occlusion" in m for m in empty)
                       else "; look at the maps with sign='signed'."), kind="note")
    if faint:
        report.text(f"{', '.join(faint)}: under 1% of the map's relevance is positive, so under the positive sign "
                    "policy the rows share out a trace of a few voxels, not where the method looks. "
                    + (occlusion if any("occlusion" in m for m in faint) else "Look at the maps with sign='signed'."),
                    kind="note")


@register_stage("segmentation")
def _segmentation_stage(ctx: DemoContext, report: Report) -> None:
    from .samples import segmentation_arrays

    unet, boxer = _shipped_model(ctx, "unet"), _shipped_model(ctx, "heart_box")
    test = segmentation_arrays(ctx.samples, "test")
    n = 2 if ctx.smoke else 8
    x, masks = test["images"][:n], {k: v[:n] for k, v in test["masks"].items()}
    report.section(
        "9. Segmentation and boxes: explaining the shipped UNet and heart box model",
        "A small UNet (lungs, heart) and a box-regression CNN (heart box), both trained by `python -m xaikit "
        "samples` on the 64 px phantom training split. Saliency targets: the sum of the heart logits over the "
        "predicted heart mask, the lung logits over the true left lung, and the box model's right edge (x1).",
    )
    report.table(unet.metrics_table("class"), "segmentation_metrics",
                 caption="UNet on the test split: Dice, IoU, HD95 (pixels) per class, 95% patient-bootstrap CIs.")
    report.table(boxer.metrics_table(), "box_metrics",
                 caption="Heart box model on the test split: mean IoU, hit rate (IoU >= 0.5), mAP@0.5, 95% CIs.")
    heart_map = _segmentation_region_mass(ctx, unet.model, x, masks, test["image_ids"][:n], report)
    _segmentation_overlays(unet.model, boxer.model, x, masks, test, heart_map, report)


def _segmentation_region_mass(ctx: DemoContext, unet, x, masks: dict, image_ids, report: Report):
    """Maps of the heart and lung targets, scored on the chest partition; returns the heart gradient map."""
    import pandas as pd

    from .regions import chest_partition, region_scores
    from .saliency import explain, targets

    regions = chest_partition(masks["left_lung"], masks["right_lung"], masks["heart"])  # fractions sum to 1
    explained = {"heart (predicted mask)": targets.segmentation(2, mask="pred"),
                 "lung (true left lung)": targets.segmentation(1, mask=masks["left_lung"])}
    methods = ["gradient"] if ctx.smoke else ["gradient", "integrated_gradients"]
    maps = {(what, m): explain(unet, x, m, target, image_ids=image_ids)
            for what, target in explained.items() for m in methods}
    scores = pd.concat([region_scores(e, regions, method=m).assign(target=what) for (what, m), e in maps.items()],
                       ignore_index=True)
    table = scores.groupby(["target", "method", "region"], as_index=False)[["mass_frac", "density_ratio"]].mean()
    report.table(table, "segmentation_region_mass", caption="Share of positive relevance per anatomical region "
                 "and its density ratio (share / area share; mean over images): which pixels outside the heart "
                 "drive the heart prediction?")
    return maps[("heart (predicted mask)", "gradient")]


def _segmentation_overlays(unet, boxer, x, masks: dict, test: dict, heart_map, report: Report) -> None:
    """The heart map with predicted/true masks and boxes, and what moves the box model's right edge."""
    from .saliency import explain
    from .train.detection import predict_boxes
    from .train.segmentation import predict_labelmaps
    from .viz.segmentation import mask_box_overlay

    pred = predict_labelmaps(unet, x[:1])
    box = (predict_boxes(boxer, x[:1])[0] * float(x.shape[-1])).tolist()
    report.figure(mask_box_overlay(x[0, 0], heart_map.maps[0],
                                   masks={"predicted heart": (pred[0] == 2).numpy(),
                                          "true left lung": masks["left_lung"][0].numpy()},
                                   boxes={"predicted heart box": box, "true heart box": test["boxes"][0].tolist()},
                                   title="Gradient of the predicted heart mask's logit sum"), "segmentation_overlay",
                  caption="Map, predicted heart mask, true left lung, predicted and true heart boxes (legend toggles).")
    box_map = explain(boxer, x[:1], "gradient", target=2, image_ids=test["image_ids"][:1])
    report.figure(mask_box_overlay(x[0, 0], box_map.maps[0], boxes={"predicted heart box": box},
                                   title="Gradient of the box model's x1 (right edge)"),
                  "box_overlay", caption="What moves the predicted heart box's right edge.")


def run_demo(
    out_dir: str | os.PathLike = "xaikit-demo",
    *,
    samples_dir: str | os.PathLike | None = None,
    smoke: bool = False,
    stages: list[str] | None = None,
) -> Path:
    """Run the demo stages and write ``<out_dir>/index.html``; return its path.

    Parameters
    ----------
    out_dir : path
        Report folder (created).
    samples_dir : path, optional
        Sample data folder (default: the shipped ``data_samples/``).
    smoke : bool
        A reduced, fast run (CI).
    stages : list of str, optional
        Names from :data:`STAGES` to run (default all, in order).
    """
    from .samples import sample_dir

    samples = Path(samples_dir) if samples_dir is not None else sample_dir()
    if not (samples / "manifest.csv").is_file():
        raise DatasetError(
            f"{samples}: no manifest.csv here. Run `python -m xaikit samples` to build the sample data, "
            "or pass --samples with the folder that holds it."
        )
    names = list(STAGES) if stages is None else stages
    stage_fns = [STAGES.lookup(name) for name in names]
    ctx = DemoContext(samples=samples, smoke=smoke)
    report = Report(Path(out_dir), title="xaikit demo: explaining a chest X-ray classifier")
    for stage in tqdm(stage_fns, desc="xaikit demo", unit="stage"):
        stage(ctx, report)
    return report.write()
