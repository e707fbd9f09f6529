"""Region scores: pixel relevance maps reduced to tidy per-image, per-region numbers.

One row per (image, region) with the columns of the region-scores contract::

    image_id, [patient_id,] label, pred, correct, method, region, area_frac, mass_frac, mean, sum, max,
    density_ratio, topk_overlap, pointing, sign, normalization[, n_voxels, volume_mm3]

Volumes (a :class:`RegionSet` with ``ndim=3`` and maps ``N x D x H x W``) give the same columns (pixels read
voxels) plus ``n_voxels`` and ``volume_mm3`` (NaN when the region set has no spacing), so the statistics
module works on them unchanged.

- ``sum``, ``mean`` (Sümer et al. 2023's c_r = sum over the region of S / |region|) and ``max`` are in
  the units of the map after the sign policy and the per-image normalization (both recorded in the
  table: raw magnitudes differ between images and methods, compare them only after normalizing);
- ``mass_frac`` is the region's share of the image's relevance (positive or absolute mass; for
  ``sign="signed"`` the net signed sum over the total absolute mass), ``area_frac`` its share of the
  pixels and ``density_ratio = mass_frac / area_frac`` (1: no more relevance than its area predicts);
- ``topk_overlap`` is the share of the image's top-``topk`` pixels (at or above the k-th largest value,
  ties included; zero-relevance pixels never count under the positive/absolute policies) inside the
  region, and ``pointing`` is 1.0 when the map's maximum falls in the region (Zhang et al. 2018's
  pointing game), NaN when the map has no positive value or is constant (no maximum to point with).

Everything is computed with matrix products over flattened masks, in chunks of images to bound memory.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import ArgumentError, ExplanationError, RegionError
from .builders import from_masks
from .regionset import RegionSet, as_numpy

__all__ = ["SIGN_POLICIES", "NORMALIZATIONS", "REGION_COLUMNS", "region_scores"]

SIGN_POLICIES = ("positive", "absolute", "signed")
NORMALIZATIONS = ("none", "sum", "max_abs")
REGION_COLUMNS = ["image_id", "label", "pred", "correct", "method", "region", "area_frac", "mass_frac", "mean",
                 "sum", "max", "density_ratio", "topk_overlap", "pointing", "sign", "normalization"]
_STATS = ("sum", "mean", "max", "mass_frac", "density_ratio", "topk_overlap", "pointing")
# working memory per chunk of maps: 16 MB keeps a chunk's float mask weights near the cache (measured on 2 cores:
# 2 000 x 224^2 x 12 per-image regions 2.8 s at 64 MB, 1.6 s at 16 MB; shared regions 0.84 -> 0.62 s)
_CHUNK_BYTES = 16 * 2**20


def region_scores(explanations: Any, regions: RegionSet | Mapping[str, Any], *, sign: str = "positive",
                  normalize: str = "none", topk: float = 0.1, labels: Any = None,
                  image_ids: Sequence[str] | None = None, patient_ids: Sequence[str] | None = None,
                  preds: Any = None, method: str | None = None) -> pd.DataFrame:
    """Tidy per-image, per-region scores of relevance maps.

    Parameters
    ----------
    explanations
        An :class:`xaikit.saliency.Explanation` (its ``maps``, ``method``, ``image_ids``, ``labels`` and
        ``preds`` are used), an array ``N x H x W`` of signed maps, a dict ``{label: Explanation}`` (as
        :func:`xaikit.saliency.explain_many` returns; the keys fill the ``method`` column) or a list of
        Explanations (each keeps its own method name). Several explanations give one table, rows stacked in
        order; the metadata arguments apply to each of them.
    regions
        A :class:`RegionSet` on the maps' plane (shared, or per image with ``N`` images), or
        ``{name: mask}``.
    sign
        ``"positive"`` (negative relevance set to 0), ``"absolute"`` or ``"signed"``.
    normalize
        Per-image scaling before ``sum``/``mean``/``max``: ``"none"``, ``"sum"`` (total absolute mass 1)
        or ``"max_abs"`` (largest absolute value 1). Fractions and ratios do not depend on it.
    topk
        Fraction of pixels counted as the map's top pixels for ``topk_overlap``.
    labels, image_ids, patient_ids, preds, method
        Metadata; override what the explanation carries. ``patient_id`` is a column only when given.
        ``method`` labels one explanation only (several: use the dict's keys).

    Returns
    -------
    pandas.DataFrame
        One row per image and region (see the module docstring for the columns).

    Examples
    --------
    >>> import numpy as np
    >>> from xaikit.regions import grid
    >>> maps = np.zeros((1, 4, 6)); maps[0, :, 4:] = 1.0
    >>> df = region_scores(maps, grid(1, 3, (4, 6)))
    >>> df["mass_frac"].tolist(), df["density_ratio"].tolist()
    ([0.0, 0.0, 1.0], [0.0, 0.0, 3.0])
    """
    _check_options(sign, normalize, topk)
    regions = regions if isinstance(regions, RegionSet) else _from_mapping(regions)
    many = _several(explanations, method)
    if many is not None:
        return pd.concat([region_scores(e, regions, sign=sign, normalize=normalize, topk=topk, labels=labels,
                                        image_ids=image_ids, patient_ids=patient_ids, preds=preds, method=name)
                          for name, e in many], ignore_index=True)
    maps, meta = _unpack(explanations, labels, image_ids, patient_ids, preds, method, regions.ndim)
    _check_alignment(maps, regions)
    values = _compute(*_as_planes(maps, regions), sign, normalize, topk)
    _warn_degenerate(values, regions, meta["image_id"])
    table = _tidy(values, regions, meta, sign, normalize)
    return _with_volumes(table, values, regions) if regions.ndim == 3 else table


def _several(explanations: Any, method: str | None) -> list[tuple[str | None, Any]] | None:
    """``[(method label, Explanation), ...]`` for a dict (keys label the methods, as from ``explain_many``)
    or a list/tuple of Explanations; None for one Explanation or an array of maps."""
    if isinstance(explanations, Mapping):
        items = list(explanations.items())
    elif isinstance(explanations, (list, tuple)) and explanations and all(hasattr(e, "maps") for e in explanations):
        items = [(None, e) for e in explanations]
    else:
        return None
    if not items:
        raise ArgumentError("explanations is an empty dict: pass at least one Explanation (e.g. from explain_many).")
    if method is not None:
        raise ArgumentError(f"method={method!r} names one method but {len(items)} explanations were given; "
                            "label them with the dict's keys instead (or call region_scores once per explanation).")
    return [(None if key is None else str(key), e) for key, e in items]


def _as_planes(maps: np.ndarray, regions: RegionSet) -> tuple[np.ndarray, RegionSet]:
    """Volumes as ``(D*H) x W`` planes: every statistic here is a function of the voxel set, not of the layout."""
    if regions.ndim == 2:
        return maps, regions
    n, d, h, w = maps.shape
    return maps.reshape(n, d * h, w), RegionSet(regions.names,
                                                regions.masks.reshape(*regions.masks.shape[:-3], d * h, w))


def _with_volumes(table: pd.DataFrame, values: dict[str, np.ndarray], regions: RegionSet) -> pd.DataFrame:
    """Volume tables get ``n_voxels`` and (with the region set's spacing) ``volume_mm3`` of each region."""
    table = table.copy()
    table["n_voxels"] = np.rint(values["area_frac"].ravel() * np.prod(regions.shape)).astype(np.int64)
    voxel = float(np.prod(regions.spacing)) if regions.spacing is not None else np.nan
    table["volume_mm3"] = table["n_voxels"] * voxel
    return table


def _check_options(sign: str, normalize: str, topk: float) -> None:
    if sign not in SIGN_POLICIES:
        raise ArgumentError(f"sign={sign!r} is not one of {SIGN_POLICIES}.")
    if normalize not in NORMALIZATIONS:
        raise ArgumentError(f"normalize={normalize!r} is not one of {NORMALIZATIONS}.")
    if not 0 < topk <= 1:
        raise ArgumentError(f"topk is a fraction of pixels in (0, 1]; got {topk}.")


def _from_mapping(regions: Any) -> RegionSet:
    if not isinstance(regions, Mapping):
        raise ArgumentError(f"regions must be a RegionSet or {{name: mask}}; got {type(regions).__name__}.")
    return from_masks(regions)


def _unpack(expl: Any, labels: Any, image_ids: Any, patient_ids: Any, preds: Any,
            method: str | None, ndim: int = 2) -> tuple[np.ndarray, dict[str, Any]]:
    if hasattr(expl, "maps"):
        maps = as_numpy(expl.maps)
        labels = labels if labels is not None else getattr(expl, "labels", None)
        preds = preds if preds is not None else getattr(expl, "preds", None)
        image_ids = image_ids if image_ids is not None else getattr(expl, "image_ids", None)
        method = method if method is not None else getattr(expl, "method", None)
    else:
        maps = as_numpy(expl)
    if maps.ndim == ndim:
        maps = maps[None]
    if maps.ndim != ndim + 1 or not np.issubdtype(maps.dtype, np.number):
        plane = "H x W" if ndim == 2 else "D x H x W (volume regions)"
        raise ArgumentError(f"maps must be a numeric N x {plane} array; got shape {maps.shape}, dtype {maps.dtype}.")
    n = maps.shape[0]
    if n == 0:
        raise ArgumentError(f"region_scores: no maps to score (shape {maps.shape}, N = 0): the explanation or array "
                            "holds no image; explain at least one input first.")
    ids = [str(i) for i in range(n)] if image_ids is None else [str(i) for i in image_ids]
    meta = {"image_id": ids, "label": _optional(labels, n, "labels"), "pred": _optional(preds, n, "preds"),
            "method": str(method) if method is not None else "unknown"}
    if patient_ids is not None:
        meta["patient_id"] = [str(p) for p in _optional(patient_ids, n, "patient_ids")]
    _check_length(ids, n, "image_ids")
    bad = np.flatnonzero(~np.isfinite(maps.reshape(n, -1)).all(axis=1))
    if bad.size:
        raise ExplanationError(f"{bad.size} maps hold NaN or inf values (images {[ids[i] for i in bad[:5]]}"
                               f"{' ...' if bad.size > 5 else ''}); recompute them or drop those images.")
    return maps, meta


def _optional(values: Any, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = as_numpy(values).ravel() if not isinstance(values, (list, tuple)) else np.asarray(values, dtype=object)
    _check_length(arr, n, name)
    return arr


def _check_length(values: Any, n: int, name: str) -> None:
    if len(values) != n:
        raise ArgumentError(f"{name} has {len(values)} entries but there are {n} maps.")


def _check_alignment(maps: np.ndarray, regions: RegionSet) -> None:
    if maps.shape[1:] != regions.shape:
        raise RegionError(
            f"Maps are {' x '.join(map(str, maps.shape[1:]))} but the regions are "
            f"{' x '.join(map(str, regions.shape))}. Build the regions through the same Preprocess as the images "
            f"(RegionSet.apply / dataset masks), or resize them with regions.resize({maps.shape[1:]}) "
            f"if the images were plainly resized.")
    if not regions.shared and regions.n_images != maps.shape[0]:
        raise RegionError(f"The region set has masks for {regions.n_images} images but there are "
                          f"{maps.shape[0]} maps; pass the regions of exactly these images, in order.")


# ---------------------------------------------------------------------------------------- computation
def _compute(maps: np.ndarray, regions: RegionSet, sign: str, normalize: str, topk: float) -> dict[str, np.ndarray]:
    n, h, w = maps.shape
    p, r = h * w, len(regions)
    dtype = np.float64 if maps.dtype == np.float64 else np.float32
    flat = maps.reshape(n, p)
    k = max(1, math.ceil(topk * p))
    per_row = p * dtype().itemsize * (4 if regions.shared else 2 + r)
    step = max(1, _CHUNK_BYTES // per_row)
    out = {name: np.empty((n, r)) for name in (*_STATS, "area_frac")}
    out["mass"] = np.empty(n)
    shared_cache = _Masks(regions.masks.reshape(r, p), dtype, (h, w)) if regions.shared else None
    for i0 in range(0, n, step):
        sl = slice(i0, min(n, i0 + step))
        raw = flat[sl].astype(dtype, copy=False)
        m = shared_cache or _Masks(regions.masks[sl].reshape(-1, r, p), dtype)
        chunk = _chunk_stats(raw, m, sign, normalize, k)
        for name, val in chunk.items():
            out[name][sl] = val
    return out


def _signed(s: np.ndarray, sign: str) -> np.ndarray:
    if sign == "positive":
        return np.maximum(s, 0)
    if sign == "absolute":
        return np.abs(s)
    return s


class _Masks:
    """Flattened masks as float weights (R x P, or n x R x P per image) and their pixel counts."""

    def __init__(self, masks: np.ndarray, dtype: type, shape: tuple[int, int] | None = None):
        self.bool = masks
        self.weights = masks.astype(dtype, order="C")
        # pixel counts as a matrix-vector product on the float weights: twice as fast as summing the booleans
        # (float32 counts are exact below 2**24 pixels; larger planes count in float64)
        ones = np.ones(masks.shape[-1], dtype if masks.shape[-1] < 2**24 else np.float64)
        self.area = np.rint(self.weights @ ones).astype(np.int64)
        self.shape = shape
        self.boxes = [_bounding_box(mk.reshape(shape)) for mk in masks] if masks.ndim == 2 else None

    def regional_sum(self, s: np.ndarray) -> np.ndarray:
        if self.weights.ndim == 2:
            return s @ self.weights.T
        return np.matmul(self.weights, s[:, :, None])[:, :, 0]

    def regional_max(self, s: np.ndarray) -> np.ndarray:
        if self.boxes is not None:
            # the maximum over each region's bounding box, read as a strided view (4x faster than gathering
            # the region's pixels); pixels of the box outside the region are masked to -inf
            planes = s.reshape(len(s), *self.shape)
            cols = []
            for box in self.boxes:
                if box is None:
                    cols.append(np.full(len(s), np.nan))
                    continue
                rows, columns, crop = box
                view = planes[:, rows, columns]
                cols.append((view if crop is None else np.where(crop, view, -np.inf)).max(axis=(1, 2)))
            return np.stack(cols, axis=1)
        # Shift each map to be >= 0 so that the product with 0/1 weights keeps the region's maximum
        # (one fused pass over n x R x P instead of a -inf fill); the weights buffer is reused.
        low = s.min(axis=1, keepdims=True)
        shifted = np.multiply(self.weights, (s - low)[:, None, :], out=self.weights)
        self.weights = None  # consumed
        best = shifted.max(axis=-1) + low
        return np.where(self.area > 0, best, np.nan)

    def contains(self, pixel: np.ndarray) -> np.ndarray:
        if self.bool.ndim == 2:
            return self.bool[:, pixel].T
        return self.bool[np.arange(len(pixel)), :, pixel]


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, np.ndarray | None] | None:
    """Row and column slices of the mask's bounding box, and the mask cropped to it (None if it fills it)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop = mask[box]
    return box[0], box[1], None if crop.all() else crop


def _chunk_stats(raw: np.ndarray, m: _Masks, sign: str, normalize: str, k: int) -> dict[str, np.ndarray]:
    s = _signed(raw, sign)
    n, p = s.shape
    mass = np.abs(s).sum(axis=1) if sign == "signed" else s.sum(axis=1)
    scale = mass if normalize == "sum" else np.abs(s).max(axis=1) if normalize == "max_abs" else np.ones(n)
    area = np.broadcast_to(m.area, (n, m.area.shape[-1])).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = m.regional_sum(s).astype(float)
        inv_scale = np.where(scale > 0, 1.0 / scale, np.nan)[:, None]
        mass_frac = total / np.where(mass > 0, mass, np.nan)[:, None]
        area_frac = area / p
        out = {"sum": total * inv_scale, "mean": total / area * inv_scale, "mass_frac": mass_frac,
               "density_ratio": mass_frac / area_frac, "area_frac": area_frac, "mass": mass,
               "topk_overlap": _topk_overlap(raw, s, m, sign, k), "pointing": _pointing(s, m)}
        out["max"] = m.regional_max(s).astype(float) * inv_scale  # last: may reuse the weights buffer
    empty = area == 0
    for name in _STATS:
        out[name] = np.where(empty, np.nan, out[name])
    return out


def _topk_overlap(raw: np.ndarray, s: np.ndarray, m: _Masks, sign: str, k: int) -> np.ndarray:
    p = s.shape[1]
    if sign == "positive":
        # max(., 0) is monotone, so the k-th largest of the clipped map is max(k-th largest of the raw map, 0);
        # selecting on the raw map avoids the ties of the zeroed half, which slow the selection down 2x
        threshold = np.maximum(np.partition(raw, p - k, axis=1)[:, p - k], 0)
    else:
        threshold = np.partition(s, p - k, axis=1)[:, p - k]
    top = s >= threshold[:, None]
    if sign != "signed":
        top &= s > 0
    count = top.sum(axis=1)
    inside = m.regional_sum(top.astype(s.dtype)).astype(float)
    return inside / np.where(count > 0, count, np.nan)[:, None]


def _pointing(s: np.ndarray, m: _Masks) -> np.ndarray:
    peak = s.argmax(axis=1)
    hit = m.contains(peak).astype(float)
    # no positive value, or a constant map (argmax would credit whichever region holds pixel 0): nothing points
    has_peak = (s[np.arange(len(s)), peak] > 0) & (s.max(axis=1) > s.min(axis=1))
    return np.where(has_peak[:, None], hit, np.nan)


# ---------------------------------------------------------------------------------------- reporting
def _warn_degenerate(values: dict[str, np.ndarray], regions: RegionSet, ids: list[str]) -> None:
    empty = values["area_frac"] == 0
    if empty.any():
        detail = "; ".join(f"{name!r} in {int(empty[:, j].sum())} images "
                           f"(e.g. {ids[int(np.flatnonzero(empty[:, j])[0])]})"
                           for j, name in enumerate(regions.names) if empty[:, j].any())
        warnings.warn(f"region_scores: empty regions get NaN scores: {detail}.", stacklevel=3)
    flat = ~(values["mass"] > 0)
    if flat.any():
        which = [ids[i] for i in np.flatnonzero(flat)[:5]]
        warnings.warn(f"region_scores: {int(flat.sum())} maps have no relevance under this sign policy "
                      f"(e.g. {which}); their fractions and normalized scores are NaN.", stacklevel=3)


def _tidy(values: dict[str, np.ndarray], regions: RegionSet, meta: dict[str, Any], sign: str,
          normalize: str) -> pd.DataFrame:
    n, r = values["sum"].shape
    cols: dict[str, Any] = {"image_id": np.repeat(np.asarray(meta["image_id"], dtype=object), r)}
    if "patient_id" in meta:
        cols["patient_id"] = np.repeat(np.asarray(meta["patient_id"], dtype=object), r)
    label, pred = (_int_column(meta[c], n, r) for c in ("label", "pred"))
    cols.update(label=label, pred=pred, correct=_correct(label, pred), method=meta["method"],
                region=np.tile(np.asarray(regions.names, dtype=object), n))
    for name in ("area_frac", "mass_frac", "mean", "sum", "max", "density_ratio", "topk_overlap", "pointing"):
        cols[name] = values[name].ravel()
    cols.update(sign=sign, normalization=normalize)
    df = pd.DataFrame(cols)
    df.attrs.update(sign=sign, normalization=normalize)
    return df


def _int_column(values: np.ndarray | None, n: int, r: int) -> pd.array:
    """Labels/predictions repeated per region: nullable integers (or the values as given if not integers)."""
    if values is None:
        return pd.array([pd.NA] * (n * r), dtype="Int64")
    rep = np.repeat(np.asarray(values), r)
    try:
        return pd.array(rep.tolist(), dtype="Int64")
    except (TypeError, ValueError):
        return pd.array(rep.tolist(), dtype=object)


def _correct(label: Any, pred: Any) -> pd.array:
    if label.isna().all() or pred.isna().all():
        return pd.array([pd.NA] * len(label), dtype="boolean")
    return pd.array(np.asarray(label == pred, dtype=object).tolist(), dtype="boolean")
