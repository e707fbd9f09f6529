"""Localization: does the map point at the ground truth (lesion masks, any region)?

The numbers come from :func:`xaikit.regions.region_scores` (pointing, mass fraction, top-k overlap of a
one-region set per image), so the kit has one definition of each; only the AUROC of the map as a pixel
detector of the mask is added here (scikit-learn).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import ArgumentError
from ..regions import RegionSet, region_scores
from .context import EvalContext
from .registry import register_metric

__all__: list[str] = []

_SIGNS = ("positive", "absolute", "signed")


def _scores(ctx: EvalContext, sign: str, topk: float, index: slice = slice(None)):
    if sign not in _SIGNS:
        raise ArgumentError(f"sign={sign!r} is not one of {_SIGNS}.")
    masks = ctx.masks[index]
    regions = RegionSet(["target"], masks[:, None])
    with warnings.catch_warnings():
        # an image with an empty mask or a map without relevance gets NaN, reported by score()'s NaN warning
        warnings.filterwarnings("ignore", message="region_scores:")
        return region_scores(ctx.maps[index].numpy(), regions, sign=sign, topk=topk)


def _empty_nan(ctx: EvalContext, values: np.ndarray) -> np.ndarray:
    values = np.array(values, dtype=float)
    values[ctx.masks.reshape(len(ctx), -1).sum(1) == 0] = np.nan
    return values


@register_metric("pointing_game", family="localization", higher_is_better=True, needs_masks=True,
                 quantus="PointingGame", defaults={"sign": "positive"})
def pointing_game(ctx: EvalContext, sign: str = "positive"):
    """1 when the map's maximum lies inside the mask (``region_scores``' ``pointing``). Zhang et al. 2018.

    Differs from Quantus on purpose where the map has no positive value: NaN here (nothing points anywhere),
    a hit or miss of an arbitrary pixel there; and on ties the first maximum counts, not any.
    """
    return [({}, _empty_nan(ctx, _scores(ctx, sign, 0.1)["pointing"]))]


@register_metric("relevance_mass", family="localization", higher_is_better=True, needs_masks=True,
                 quantus="RelevanceMassAccuracy", defaults={"sign": "positive"})
def relevance_mass(ctx: EvalContext, sign: str = "positive"):
    """Share of the map's relevance inside the mask (``region_scores``' ``mass_frac``). Arras et al. 2022.

    Quantus' ``RelevanceMassAccuracy(abs=True)`` equals ``sign="absolute"``; with ``sign="signed"`` the net
    signed sum is divided by the total *absolute* mass (bounded in [-1, 1]), not by the signed total, which can
    be near zero.
    """
    return [({}, _empty_nan(ctx, _scores(ctx, sign, 0.1)["mass_frac"]))]


@register_metric("relevance_rank", family="localization", higher_is_better=True, needs_masks=True,
                 quantus="RelevanceRankAccuracy", defaults={"sign": "positive"})
def relevance_rank(ctx: EvalContext, sign: str = "positive"):
    """Share of the map's top-K pixels inside the mask, K = mask area (``topk_overlap``). Arras et al. 2022."""
    p = ctx.masks[0].size
    out = np.full(len(ctx), np.nan)
    for i, area in enumerate(ctx.masks.reshape(len(ctx), -1).sum(1)):
        if area:
            out[i] = _scores(ctx, sign, area / p, slice(i, i + 1))["topk_overlap"].iloc[0]
    return [({}, out)]


@register_metric("topk_iou", family="localization", higher_is_better=True, needs_masks=True,
                 quantus="TopKIntersection", defaults={"topk": 0.05, "sign": "positive"})
def topk_iou(ctx: EvalContext, topk: float = 0.05, sign: str = "positive"):
    """Intersection over union of the map's top ``topk`` fraction of pixels and the mask.

    From ``region_scores``' ``topk_overlap`` o and ``area_frac`` a: IoU = o k / (k + a P - o k) with
    k = ceil(topk P) top pixels. Quantus' ``TopKIntersection`` reports o itself (the overlap share); the test
    checks o against it and this formula against a direct count.
    """
    table = _scores(ctx, sign, topk)
    p = ctx.masks[0].size
    k = math.ceil(topk * p)
    inter = table["topk_overlap"].to_numpy() * k
    return [({}, _empty_nan(ctx, inter / (k + table["area_frac"].to_numpy() * p - inter)))]


@register_metric("auroc", family="localization", higher_is_better=True, needs_masks=True, quantus="AUC",
                 defaults={"sign": "signed"})
def auroc(ctx: EvalContext, sign: str = "signed"):
    """Area under the ROC curve of the map as a pixel classifier of the mask (0.5: no better than chance)."""
    from sklearn.metrics import roc_auc_score

    if sign not in _SIGNS:
        raise ArgumentError(f"sign={sign!r} is not one of {_SIGNS}.")
    maps = ctx.maps.reshape(len(ctx), -1).numpy()
    maps = np.abs(maps) if sign == "absolute" else np.maximum(maps, 0) if sign == "positive" else maps
    truth = ctx.masks.reshape(len(ctx), -1)
    out = [roc_auc_score(t, m) if 0 < t.sum() < t.size else np.nan for t, m in zip(truth, maps)]
    return [({}, np.asarray(out))]
