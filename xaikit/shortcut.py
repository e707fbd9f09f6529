"""The shortcut lab: explanations plus region statistics catch a model that reads a marker instead of the lungs.

Real chest X-ray classifiers learned hospital tokens burned into the image instead of the disease
(Zech et al. 2018, "Variable generalization performance of a deep learning model to detect pneumonia in
chest radiographs"; DeGrave et al. 2021, "AI for radiographic COVID-19 detection selects shortcuts over
signal"). The phantom reproduces this: :data:`xaikit.samples.SHORTCUT` puts a corner marker on 90% of
pneumonia images and 5% of normal ones, and the ``shortcut`` sample model is trained on it.

:func:`shortcut_lab` explains every model on the same held-out pneumonia images that carry the marker
(:func:`lab_dataset`), scores the relevance in regions taken from each image's ground truth
(:func:`lab_regions`: ``marker``, ``lesion``, ``lesion_lung``, ``other_lung``), and tests, as one Holm
family over models x methods x regions,

- ``region_enrichment``: is a region's relevance density above what its area predicts (log density ratio
  against 0, Wilcoxon signed-rank, matched-pairs rank-biserial effect with a bootstrap CI)?
- ``compare_paired`` over regions: does the lesion's lung hold more relevance mass than the other lung
  (Wilcoxon)?
- ``compare_paired`` over models (with two or more): on the same images and method, does one model put
  more of its relevance mass in a region than the other (Wilcoxon; positive effect: ``group_a`` higher)?

A model that cheats shows a strongly enriched ``marker`` region; a clean one does not, and puts its
relevance in the lesion's lung. Enrichment is measured against the region's share of the *whole image*,
most of which (air, the body's edges) draws little relevance; a path method with a black baseline
(integrated gradients) can give bright structures such as the tag more than their area even in a clean
model (an earlier build of the clean sample model did, 2x). The between-model comparison on the same
images is the control that settles it.

Examples
--------
>>> from xaikit.shortcut import lab_dataset, load_lab_models, shortcut_lab
>>> lab = shortcut_lab(load_lab_models(), lab_dataset(16), n_boot=200)  # doctest: +SKIP
>>> lab.tests.query("region == 'marker'")[["model", "method", "p_adj", "effect_size"]]  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._resampling import N_BOOT
from .checkpoint import load_checkpoint
from .data.preprocess import Preprocess
from .errors import ArgumentError, DatasetError
from .phantom import draw_chest_set
from .phantom.dataset import PhantomDataset
from .regions import RegionSet, region_scores
from .saliency import explain_many
from .samples import CLASSES, MODEL_PREPROCESS, MODELS, SHORTCUT, sample_dir
from .stats import compare_paired, correct, region_enrichment

__all__ = ["LAB_METHODS", "LAB_REGIONS", "ShortcutLab", "lab_dataset", "lab_regions", "load_lab_models",
           "shortcut_lab"]

#: Regions of the lab, from each image's ground-truth masks.
LAB_REGIONS = ("marker", "lesion", "lesion_lung", "other_lung")

#: Saliency methods of the lab (CPU-cheap gradient-family methods): label -> {"method": ..., **params}.
LAB_METHODS: dict[str, dict[str, Any]] = {
    "gradient": {"method": "gradient"},
    "integrated_gradients": {"method": "integrated_gradients", "n_steps": 16},
}

_SIDES = ("left_lung", "right_lung")


def lab_dataset(n: int = 24, *, seed: int = 31, preprocess: Any = None):
    """Held-out lab images: ``n`` pneumonia phantoms that all carry the marker, each with its lesion in one lung.

    Drawn in memory from their own seed (none of them is in a training set), with the shortcut set's size
    and the sample models' preprocessing (default ``Preprocess(size=128)``). A lesion in one lung only keeps
    ``other_lung`` defined; the images are the first ``n`` such ones of the plan, so the choice is
    deterministic and recorded in the dataset's ``table``.

    Returns
    -------
    xaikit.phantom.dataset.PhantomDataset
    """

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ArgumentError(f"lab_dataset: n must be an int >= 2 (images to test); got {n!r}.")
    pre = preprocess if preprocess is not None else Preprocess(**MODEL_PREPROCESS)
    chest = draw_chest_set(4 * int(n), seed=seed, size=SHORTCUT.size, prevalence=1.0, marker_rate_pos=1.0)
    full = PhantomDataset(chest, pre, classes=CLASSES)
    keep: list[int] = []
    for i in range(len(full)):  # draw only as many as needed
        if "," not in full[i]["meta"]["lesion_sides"]:
            keep.append(i)
        if len(keep) == n:
            return full.subset(keep)
    raise DatasetError(f"lab_dataset: only {len(keep)} of {len(chest)} drawn images have a one-sided lesion; "
                       f"ask for fewer than n={n}.")


def lab_regions(samples: Sequence[Mapping[str, Any]]):
    """The lab's :class:`~xaikit.regions.RegionSet` (per image): ``marker``, ``lesion``, ``lesion_lung``
    (the lung(s) the lesion touches) and ``other_lung`` (the lung it does not touch; empty for a
    two-sided lesion, which then gives NaN scores and a warning in :func:`~xaikit.regions.region_scores`)."""

    if not samples:
        raise ArgumentError("lab_regions: no samples given.")
    masks = [_lab_masks({k: np.asarray(v, bool) for k, v in s["masks"].items()}, s.get("id", i))
             for i, s in enumerate(samples)]
    return RegionSet(LAB_REGIONS, np.stack([np.stack([m[r] for r in LAB_REGIONS]) for m in masks]))


def _lab_masks(m: Mapping[str, np.ndarray], image_id: Any) -> dict[str, np.ndarray]:
    missing = [k for k in ("marker", "lesion", *_SIDES) if k not in m]
    if missing:
        raise DatasetError(f"lab_regions: image {image_id!r} has no mask(s) {missing}; the lab needs phantom "
                           "samples with ground-truth marker, lesion and lung masks.")
    touched = [bool((m[s] & m["lesion"]).any()) for s in _SIDES]
    lesion_lung = np.zeros_like(m["lesion"])
    other_lung = np.zeros_like(m["lesion"])
    for side, hit in zip(_SIDES, touched):
        if hit:
            lesion_lung |= m[side]
        else:
            other_lung |= m[side]
    return {"marker": m["marker"], "lesion": m["lesion"], "lesion_lung": lesion_lung, "other_lung": other_lung}


def load_lab_models(samples_dir: Any = None) -> dict[str, nn.Module]:
    """The shipped ``clean`` and ``shortcut`` sample models (``{name: model}``, eval mode)."""
    from pathlib import Path

    folder = sample_dir() if samples_dir is None else Path(samples_dir)
    out = {}
    for name in ("clean", "shortcut"):
        path = folder / "models" / MODELS[name]
        if not path.is_file():
            raise DatasetError(f"{path}: the {name} sample model is missing. Run `python -m xaikit samples`.")
        out[name] = load_checkpoint(path).model.eval()
    return out


@dataclass
class ShortcutLab:
    """Result of :func:`shortcut_lab`: compute once, then tables and figures.

    Attributes
    ----------
    scores : pandas.DataFrame
        Region scores with a ``model`` column (``region_scores`` columns otherwise).
    tests : pandas.DataFrame
        One family (Holm by default): enrichment per model x method x region, the paired lesion-lung vs
        other-lung test per model x method, and the paired model comparison per method x region
        (tests-table columns plus ``model``, ``within``).
    explanations : dict
        ``{(model, method): Explanation}``.
    regions : RegionSet
        The lab regions of the images.
    images : torch.Tensor
        The explained inputs ``N x C x H x W``.
    """

    scores: pd.DataFrame
    tests: pd.DataFrame
    explanations: dict
    regions: Any
    images: torch.Tensor

    def summary(self, region: str = "marker") -> pd.DataFrame:
        """One row per model and method for ``region``: geometric-mean density ratio, effect size with CI,
        raw and adjusted p and the verdict (``significant``)."""
        cols = ["model", "method", "region", "n_a", "estimate", "effect_size", "effect_name", "ci_low", "ci_high",
                "p_raw", "p_adj", "significant"]
        rows = self.tests[(self.tests["family"] == "region_enrichment") & (self.tests["region"] == region)]
        return rows[cols].rename(columns={"n_a": "n_images", "estimate": "density_ratio_gmean"}).reset_index(drop=True)

    def plot_forest(self):
        """Forest plot of every test of the family (:func:`xaikit.viz.stats.forest_plot`)."""
        from .viz.stats import forest_plot

        return forest_plot(self.tests, label=("model", "method", "region", "group_a", "group_b"))

    def plot_heatmap(self, method: str | None = None):
        """Model x region heatmap of enrichment effect sizes (one saliency method; default the first)."""
        from .viz.stats import effect_heatmap

        enr = self.tests[self.tests["family"] == "region_enrichment"]
        method = method if method is not None else str(enr["method"].iloc[0])
        fig = effect_heatmap(enr[enr["method"] == method], rows="model", cols="region")
        fig.update_layout(title=f"Enrichment effect (rank-biserial), {method}: model x region")
        return fig

    def plot_boxplot(self, method: str | None = None, value: str = "density_ratio"):
        """Per-region box plot of ``value`` for each model (one saliency method; default the first)."""
        from .viz.stats import region_boxplot

        method = method if method is not None else str(self.scores["method"].iloc[0])
        fig = region_boxplot(self.scores[self.scores["method"] == method], value=value, group="model")
        if value == "density_ratio":
            fig.add_hline(y=1.0, line_dash="dot", line_color="grey")
            fig.update_yaxes(type="log")
        fig.update_layout(title=f"{value} by region and model ({method}; 1 = no more than the region's area)")
        return fig


def shortcut_lab(models: Mapping[str, nn.Module], dataset: Sequence[Mapping[str, Any]], *,
                 methods: Mapping[str, Mapping[str, Any]] | None = None, target: Any = 1, sign: str = "absolute",
                 correction: str = "holm", alpha: float = 0.05, n_boot: int = N_BOOT, seed: int = 0) -> ShortcutLab:
    """Explain each model on the lab images and test where its relevance goes (one multiplicity family).

    Parameters
    ----------
    models
        ``{name: model}``, e.g. :func:`load_lab_models` (``clean`` and ``shortcut``).
    dataset
        Phantom samples with ``marker``, ``lesion`` and lung masks, e.g. :func:`lab_dataset`.
    methods
        Saliency methods ``{label: {"method": name, **params}}`` (default :data:`LAB_METHODS`).
    target
        What is explained (see :func:`xaikit.saliency.explain`); default class 1, the pneumonia logit:
        "what in this image raises the pneumonia score".
    sign
        Sign policy of the region scores (default ``"absolute"``: gradient signs are not evidence
        directions).
    correction, alpha
        Multiplicity correction over the whole family, and its level.
    n_boot, seed
        Bootstrap resamples of the effect-size CIs, and their seed.

    Returns
    -------
    ShortcutLab
    """

    if not models:
        raise ArgumentError("shortcut_lab: models is empty; pass {name: model}, e.g. load_lab_models().")
    samples = [dataset[i] for i in range(len(dataset))]
    if len(samples) < 2:
        raise ArgumentError(f"shortcut_lab: need at least 2 images; got {len(samples)}.")
    x = torch.stack([s["image"] for s in samples])
    ids = [str(s["id"]) for s in samples]
    labels = torch.as_tensor([int(s["label"]) for s in samples])
    regions = lab_regions(samples)
    explanations, tables = {}, []
    for name, model in models.items():
        results = explain_many(model, x, dict(methods or LAB_METHODS), target=target, image_ids=ids, labels=labels,
                               progress=False, seed=seed)
        for label, expl in results.items():
            explanations[(name, label)] = expl
            scores = region_scores(expl, regions, sign=sign, method=label,
                                   patient_ids=[str(s["patient_id"]) for s in samples])
            tables.append(scores.assign(model=name))
    scores = pd.concat(tables, ignore_index=True)
    by = ("model", "method", "region")
    enrichment = region_enrichment(scores, by=by, n_boot=n_boot, seed=seed, correction="none")
    lungs = compare_paired(scores[scores["region"].isin(["lesion_lung", "other_lung"])], "region",
                           by=("model", "method"), n_boot=n_boot, seed=seed, correction="none")
    parts = [enrichment, lungs]
    if len(models) > 1:
        parts.append(compare_paired(scores, "model", by=("method", "region"), n_boot=n_boot, seed=seed,
                                    correction="none"))
    tests = pd.concat(parts, ignore_index=True)
    tests["model"] = tests["model"].fillna("")  # the model comparisons span both models
    tests = correct(tests, correction, alpha)
    return ShortcutLab(scores=scores, tests=tests, explanations=explanations, regions=regions, images=x)
