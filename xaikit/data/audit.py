"""Dataset audit: what could a model learn from this dataset besides the disease?

Models learn whatever separates the classes: in Kermany's chest X-rays NORMAL images are larger files of a
different size than PNEUMONIA images; in hospital data a burned-in marker or a scanner's intensity profile
can go with the label (Zech et al. 2018, *PLoS Med* 15:e1002683). :func:`audit` measures, per image, the
properties such confounds live in — image size, aspect ratio, bit depth, file size, intensity, the image
border where markers sit — and tests each between classes with an effect size, so a reviewer sees not just
*whether* a property differs by class but *how much*. It also counts duplicate images (exact pixel copies)
and patients that appear in more than one split.

The result is one tidy row per check; every flagged row is also announced with a warning.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from .._multiplicity import adjust_pvalues, rank_biserial
from ..errors import ArgumentError, DatasetError, ManifestError
from ..io import read_image
from .manifest import ManifestDataset
from .splits import patient_leaks

__all__ = ["audit", "AuditTable", "image_features", "FEATURES", "AUDIT_COLUMNS"]

#: Per-image properties compared between classes: column -> what it is.
FEATURES = {
    "height": "image height in pixels",
    "width": "image width in pixels",
    "aspect_ratio": "width / height",
    "bit_depth": "stored bits per pixel",
    "file_kb": "file size in kB",
    "intensity_mean": "mean intensity after the file's display window (0 black .. 1 white)",
    "intensity_std": "intensity standard deviation after the display window",
    "border_mean": "mean intensity of the outer 6% frame, where burned-in markers and text sit",
}

#: Columns of the audit table.
AUDIT_COLUMNS = ["check", "feature", "group_a", "group_b", "n_a", "n_b", "statistic", "p_raw", "p_adj",
                 "effect_size", "effect_name", "flag", "detail"]

_BORDER = 0.06


# ---------------------------------------------------------------------- per-image features
def image_features(data: Any, *, progress: bool = True) -> pd.DataFrame:
    """Read every image once and measure the properties in :data:`FEATURES`.

    Parameters
    ----------
    data : ManifestDataset, pandas.DataFrame or path-like
        A dataset, a manifest table (``image_path, label`` and optionally ``split, patient_id, image_id``;
        relative paths start at the current folder — e.g. a loader's output) or a manifest CSV.
    progress : bool
        Show a progress bar (tqdm.auto).

    Returns
    -------
    pandas.DataFrame
        One row per image: ``image_id, label, split, patient_id`` and the :data:`FEATURES` columns, plus
        ``pixel_hash`` (SHA-1 of the decoded pixels, for duplicates).
    """
    table = _as_table(data)
    rows = [_features_of(path) for path in tqdm(table["path"], desc="audit: reading images", unit="image",
                                                disable=not progress)]
    return pd.concat([table.drop(columns="path").reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def _as_table(data: Any) -> pd.DataFrame:
    """``image_id, label, split, patient_id, path`` from a dataset, a manifest table or a CSV path."""

    if isinstance(data, (str, os.PathLike)):
        data = ManifestDataset(data)
    if isinstance(data, ManifestDataset):
        src = data.table.drop(columns=["image_id"], errors="ignore").rename(columns={"id": "image_id"})
    elif isinstance(data, pd.DataFrame):
        src = _from_manifest_table(data)
    else:
        raise ArgumentError(f"audit: data of type {type(data).__name__} is not a ManifestDataset, a manifest "
                            "DataFrame or a CSV path.")
    if src.empty:
        raise DatasetError("audit: the dataset has no images.")
    out = pd.DataFrame({"image_id": src["image_id"].astype(str), "label": src["label"].astype(str)})
    out["split"] = src["split"].astype(str) if "split" in src.columns else ""
    out["patient_id"] = src["patient_id"].astype(str) if "patient_id" in src.columns else out["image_id"]
    out["path"] = src["path"].astype(str)
    return out


def _from_manifest_table(table: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("image_path", "label") if c not in table.columns]
    if missing:
        raise ManifestError(f"audit: the table lacks column(s) {missing}; found {list(table.columns)}.")
    paths = [Path(str(p)).expanduser() for p in table["image_path"]]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise ManifestError(f"audit: {len(absent)} image file(s) not found, e.g. {absent[:5]}. Relative paths "
                            f"start at {Path.cwd()}; fix the paths or drop those rows.")
    ids = table["image_id"] if "image_id" in table.columns else [p.with_suffix("").as_posix() for p in paths]
    out = table.assign(image_id=list(ids), path=[str(p) for p in paths])
    empty = out["patient_id"].astype(str).str.strip() == "" if "patient_id" in out.columns else None
    if empty is not None:
        out.loc[empty, "patient_id"] = out.loc[empty, "image_id"]
    return out


def _features_of(path: str) -> dict[str, Any]:
    image = read_image(path)
    plane = image.display()  # the file's own display window, 0..1: comparable across bit depths
    border = _border_mask(plane.shape[-2:])
    bits = image.meta.get("bit_depth", image.meta.get("BitsStored"))
    return {
        "height": int(image.shape[-2]), "width": int(image.shape[-1]),
        "aspect_ratio": image.shape[-1] / image.shape[-2],
        "bit_depth": float(bits) if bits is not None else np.nan,
        "file_kb": os.path.getsize(path) / 1024.0,
        "intensity_mean": float(plane.mean()), "intensity_std": float(plane.std()),
        "border_mean": float(plane[..., border].mean()),
        "pixel_hash": hashlib.sha1(np.ascontiguousarray(image.array).tobytes()).hexdigest(),
    }


def _border_mask(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    bh, bw = max(1, round(_BORDER * h)), max(1, round(_BORDER * w))
    mask = np.ones((h, w), dtype=bool)
    mask[bh:h - bh, bw:w - bw] = False
    return mask


# ---------------------------------------------------------------------- the audit
class AuditTable(pd.DataFrame):
    """The audit's tidy table (a pandas DataFrame, columns :data:`AUDIT_COLUMNS`) carrying ``features``: the
    per-image features it was computed from, without patient identifiers, for the figures
    (:func:`xaikit.viz.audit.audit_figures`). Row selections and ``set_index`` keep them (pandas ``_metadata``)."""

    _metadata = ["features"]

    @property
    def _constructor(self):
        return AuditTable


def audit(data: Any, *, features: pd.DataFrame | None = None, alpha: float = 0.05, min_effect: float = 0.3,
          imbalance: float = 1.5, progress: bool = True) -> pd.DataFrame:
    """Look for confounds a model could learn instead of the disease; one tidy row per check.

    Parameters
    ----------
    data : ManifestDataset, pandas.DataFrame or path-like
        What to audit (see :func:`image_features`); ignored when ``features`` is given.
    features : pandas.DataFrame, optional
        The output of :func:`image_features`, to avoid reading the images again.
    alpha : float
        Level for the tests, after Holm's correction over all feature tests.
    min_effect : float
        A feature is flagged when it differs by class with ``p_adj <= alpha`` *and* an effect of at least this
        size (rank-biserial correlation for two classes, epsilon-squared for more; 0.3 is a medium effect).
    imbalance : float
        Flag the class balance when the largest class has more than this many times the images of the
        smallest.
    progress : bool
        Progress bar while reading images.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`AUDIT_COLUMNS`. Checks: ``class_balance``, ``split_balance`` (label vs split,
        chi-square with Cramér's V), ``feature_by_class`` (one row per feature: Mann-Whitney U with the
        rank-biserial correlation, or Kruskal-Wallis with epsilon-squared), ``duplicate_images``,
        ``duplicates_across_splits``, ``patients_across_splits``. Patient identifiers are never written into
        the table. The per-image numbers behind it (:func:`image_features`, less ``patient_id``) travel with
        it as ``table.features`` (an :class:`AuditTable` is a DataFrame), from which
        :func:`xaikit.viz.audit.audit_figures` draws (each image is read once, here). To audit features you already
        have, pass them as ``features=``.

    Examples
    --------
    >>> feats = image_features("data_samples/manifest.csv", progress=False)  # doctest: +SKIP
    >>> table = audit(None, features=feats)  # doctest: +SKIP
    >>> table[table["flag"]]  # doctest: +SKIP
    """
    if not 0 < alpha < 1 or min_effect < 0 or imbalance < 1:
        raise ArgumentError(f"audit: alpha={alpha} must be in (0, 1), min_effect={min_effect} >= 0 and "
                            f"imbalance={imbalance} >= 1.")
    feats = image_features(data, progress=progress) if features is None else features
    classes = sorted(feats["label"].unique())
    rows = [_class_balance(feats, classes, imbalance), _split_balance(feats, alpha)]
    rows += _feature_tests(feats, classes, alpha, min_effect)
    rows += _duplicates(feats)
    rows.append(_patient_leaks(feats))
    table = AuditTable([r for r in rows if r is not None], columns=AUDIT_COLUMNS)
    table["flag"] = table["flag"].astype(bool)
    # what the figures need (xaikit.viz.audit draws from it and never reads an image); no patient identifiers
    table.features = feats.drop(columns="patient_id", errors="ignore").reset_index(drop=True)
    for detail in table.loc[table["flag"], "detail"]:
        warnings.warn(f"audit: {detail}", stacklevel=2)
    return table


def _row(check: str, feature: str = "", **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(AUDIT_COLUMNS, np.nan)
    row.update(check=check, feature=feature, group_a="", group_b="", effect_name="", flag=False, detail="")
    row.update(values)
    return row


def _class_balance(feats: pd.DataFrame, classes: list[str], imbalance: float) -> dict[str, Any]:
    counts = feats["label"].value_counts().reindex(classes)
    ratio = counts.max() / counts.min()
    text = ", ".join(f"{c}: {n} ({n / counts.sum():.0%})" for c, n in counts.items())
    flag = len(classes) < 2 or ratio > imbalance
    why = "only one class" if len(classes) < 2 else f"largest/smallest class = {ratio:.2f}"
    return _row("class_balance", "label", group_a=counts.idxmax(), group_b=counts.idxmin(), n_a=counts.max(),
                n_b=counts.min(), statistic=ratio, effect_size=ratio, effect_name="max/min count", flag=flag,
                detail=f"class balance: {text}; {why}" + (" (use class weights or a weighted sampler)" if flag else ""))


def _split_balance(feats: pd.DataFrame, alpha: float) -> dict[str, Any] | None:
    splits = feats["split"].replace("", np.nan).dropna()
    if splits.nunique() < 2 or feats["label"].nunique() < 2:
        return None
    crosstab = pd.crosstab(feats.loc[splits.index, "label"], splits)
    chi2, p, _, _ = stats.chi2_contingency(crosstab)
    v = np.sqrt(chi2 / (crosstab.to_numpy().sum() * (min(crosstab.shape) - 1)))
    flag = bool(p <= alpha and v >= 0.1)
    parts = "; ".join(f"{s}: " + ", ".join(f"{c} {n}" for c, n in crosstab[s].items()) for s in crosstab.columns)
    return _row("split_balance", "label x split", n_a=int(crosstab.to_numpy().sum()), statistic=chi2, p_raw=p,
                p_adj=p, effect_size=v, effect_name="cramers_v", flag=flag,
                detail=f"class mix by split ({parts})" + ("; the splits differ in class mix" if flag else ""))


def _feature_tests(feats: pd.DataFrame, classes: list[str], alpha: float, min_effect: float) -> list[dict]:
    if len(classes) < 2:
        return []
    rows = [_feature_test(feats, name, classes) for name in FEATURES]
    tested = [r for r in rows if np.isfinite(r["p_raw"])]
    if tested:
        adjusted = adjust_pvalues(np.array([r["p_raw"] for r in tested], float), "holm", alpha)
        for r, p_adj in zip(tested, adjusted):
            r["p_adj"] = p_adj
            r["flag"] = bool(p_adj <= alpha and abs(r["effect_size"]) >= min_effect)
            if r["flag"]:
                r["detail"] += f"; differs by class (p_adj={p_adj:.2g}, {r['effect_name']}={r['effect_size']:+.2f})" \
                               " — a model could learn it instead of the disease"
    return rows


def _feature_test(feats: pd.DataFrame, name: str, classes: list[str]) -> dict[str, Any]:
    groups = [feats.loc[feats["label"] == c, name].dropna().to_numpy(float) for c in classes]
    medians = ", ".join(f"{c}: {np.median(g):.4g}" if g.size else f"{c}: n/a" for c, g in zip(classes, groups))
    detail = f"{name} ({FEATURES[name]}), median by class {medians}"
    values = np.concatenate(groups)
    if values.size == 0 or np.ptp(values) == 0 or any(g.size < 2 for g in groups):
        why = "the same in every image" if values.size and np.ptp(values) == 0 else "too few values to test"
        return _row("feature_by_class", name, group_a=", ".join(classes), detail=f"{detail}; {why}")
    if len(classes) == 2:
        u, p = stats.mannwhitneyu(groups[0], groups[1], alternative="two-sided")
        return _row("feature_by_class", name, group_a=classes[0], group_b=classes[1], n_a=groups[0].size,
                    n_b=groups[1].size, statistic=u, p_raw=p, effect_size=float(rank_biserial(*groups)),
                    effect_name="rank_biserial", detail=detail)
    h, p = stats.kruskal(*groups)
    return _row("feature_by_class", name, group_a=", ".join(classes), n_a=values.size, statistic=h, p_raw=p,
                effect_size=h / (values.size - 1), effect_name="epsilon_squared", detail=detail)


def _duplicates(feats: pd.DataFrame) -> list[dict[str, Any]]:
    groups = feats.groupby("pixel_hash").filter(lambda g: len(g) > 1).groupby("pixel_hash")
    dup_ids = [sorted(g["image_id"]) for _, g in groups]
    n_images = sum(len(ids) for ids in dup_ids)
    shown = "; ".join(" = ".join(ids) for ids in dup_ids[:5]) + (" ..." if len(dup_ids) > 5 else "")
    conflicting = sum(g["label"].nunique() > 1 for _, g in groups)
    rows = [_row("duplicate_images", "pixels", n_a=n_images, statistic=len(dup_ids), flag=bool(dup_ids),
                 detail=(f"{n_images} images in {len(dup_ids)} groups of identical pixels"
                         f"{f', {conflicting} with conflicting labels' if conflicting else ''}: {shown}")
                 if dup_ids else "no two images have identical pixels")]
    if feats["split"].replace("", np.nan).notna().any():
        across = [sorted(g["image_id"]) for _, g in groups if g["split"].nunique() > 1]
        rows.append(_row("duplicates_across_splits", "pixels", n_a=sum(map(len, across)), statistic=len(across),
                         flag=bool(across),
                         detail=f"{len(across)} identical images sit in more than one split (a test-set leak): "
                                + "; ".join(" = ".join(ids) for ids in across[:5]) if across
                         else "no identical image is in two splits"))
    return rows


def _patient_leaks(feats: pd.DataFrame) -> dict[str, Any] | None:
    if not feats["split"].replace("", np.nan).notna().any():
        return None
    leaks = patient_leaks(feats)
    n_patients = feats["patient_id"].nunique()
    # counts only: patient identifiers stay out of the table (call patient_leaks yourself to see them)
    return _row("patients_across_splits", "patient_id", n_a=len(leaks), n_b=n_patients, statistic=len(leaks),
                flag=not leaks.empty,
                detail=(f"{len(leaks)} of {n_patients} patients have images in more than one split "
                        "(xaikit.data.patient_leaks lists them; re-split with patient_split)")
                if not leaks.empty else f"no patient is in two splits ({n_patients} patients)")
