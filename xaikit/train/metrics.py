"""Classification metrics with patient-level bootstrap confidence intervals.

Every metric is scikit-learn's; the bootstrap resamples **patients** with replacement (all images of a drawn
patient come along), implemented as per-image ``sample_weight`` = how often the image's patient was drawn, which
is exactly a patient resample and lets scikit-learn do the weighting. Only the expected calibration error is
written here, because scikit-learn has no function for it.

Binary tasks score the probability of class 1 (the *positive* class, e.g. ``pneumonia``); multi-class tasks use
macro averages and one-vs-rest curves.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import sklearn
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.preprocessing import label_binarize

from .._resampling import patient_bootstrap, percentile_ci
from ..errors import ArgumentError

__all__ = [
    "classification_scores",
    "expected_calibration_error",
    "reliability_table",
    "choose_threshold",
    "patient_bootstrap",
    "percentile_ci",
    "bootstrap_replicates",
    "replicate_scores",
    "curve_point",
    "band",
    "CURVE_GRID",
]

#: the x positions (FPR for ROC, recall for PR) on which bootstrap curves are interpolated
CURVE_GRID = np.linspace(0.0, 1.0, 101)


def classification_scores(y: np.ndarray, prob: np.ndarray, pred: np.ndarray,
                          sample_weight: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, balanced accuracy, sensitivity, specificity, precision, F1, ROC AUC, PR AUC, Brier, ECE.

    ``prob`` is ``N x K``; binary tasks (K = 2) score class 1, multi-class tasks average over classes
    (macro; ROC AUC one-vs-rest). A metric that is undefined on the data (e.g. ROC AUC with one class) is NaN.
    """
    k = prob.shape[1]
    w = sample_weight
    out = {"accuracy": skm.accuracy_score(y, pred, sample_weight=w),
           "balanced_accuracy": _balanced_accuracy(y, pred, w)}
    if k == 2:
        out |= {
            "sensitivity": skm.recall_score(y, pred, pos_label=1, sample_weight=w, zero_division=np.nan),
            "specificity": skm.recall_score(y, pred, pos_label=0, sample_weight=w, zero_division=np.nan),
            "precision": skm.precision_score(y, pred, pos_label=1, sample_weight=w, zero_division=np.nan),
            "f1": skm.f1_score(y, pred, pos_label=1, sample_weight=w, zero_division=np.nan),
            "roc_auc": _two_classes(y, lambda: skm.roc_auc_score(y, prob[:, 1], sample_weight=w)),
            "pr_auc": _two_classes(y, lambda: skm.average_precision_score(y, prob[:, 1], sample_weight=w)),
            "brier": skm.brier_score_loss(y, prob[:, 1], sample_weight=w),
        }
    else:
        labels = np.arange(k)
        macro = dict(labels=labels, average="macro", sample_weight=w, zero_division=np.nan)
        out |= {
            "sensitivity": skm.recall_score(y, pred, **macro),
            "specificity": _macro_specificity(y, pred, labels, w),
            "precision": skm.precision_score(y, pred, **macro),
            "f1": skm.f1_score(y, pred, **macro),
            "roc_auc": _all_classes(y, k, lambda: skm.roc_auc_score(y, prob, multi_class="ovr", labels=labels,
                                                                     sample_weight=w)),
            "pr_auc": _all_classes(y, k, lambda: skm.average_precision_score(
                label_binarize(y, classes=labels), prob, average="macro", sample_weight=w)),
            "brier": np.nan,
        }
    out["ece"] = expected_calibration_error(y, prob, sample_weight=w)
    return {name: float(v) for name, v in out.items()}


def _balanced_accuracy(y, pred, w):
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true" is expected in small resamples
        warnings.simplefilter("ignore", UserWarning)
        return skm.balanced_accuracy_score(y, pred, sample_weight=w)


def _macro_specificity(y, pred, labels, w):
    mcm = skm.multilabel_confusion_matrix(y, pred, labels=labels, sample_weight=w)  # [[tn, fp], [fn, tp]]
    tn, fp = mcm[:, 0, 0], mcm[:, 0, 1]
    return float(np.mean(tn / np.maximum(tn + fp, np.finfo(float).tiny)))


def _two_classes(y, fn):
    return fn() if np.unique(y).size == 2 else np.nan


def _all_classes(y, k, fn):
    return fn() if np.unique(y).size == k else np.nan


def _calibration_pairs(y: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(outcome, confidence): P(class 1) vs label for binary, top-label confidence vs correctness otherwise."""
    if prob.shape[1] == 2:
        return (y == 1).astype(float), prob[:, 1]
    return (prob.argmax(1) == y).astype(float), prob.max(1)


def _bin_ids(conf: np.ndarray, n_bins: int) -> np.ndarray:
    # the same uniform bins as sklearn.calibration.calibration_curve(strategy="uniform")
    return np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], conf)


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, n_bins: int = 10,
                               sample_weight: np.ndarray | None = None) -> float:
    """ECE of Guo et al. (2017), "On calibration of modern neural networks": the bin-size-weighted mean gap
    between accuracy and confidence over ``n_bins`` equal-width bins.

    Hand-written because scikit-learn has no ECE; the bins are those of ``calibration_curve(strategy="uniform")``
    so the number matches :func:`reliability_table`. Binary: calibration of P(class 1); multi-class: top label.
    """
    outcome, conf = _calibration_pairs(y, prob)
    w = np.ones_like(conf) if sample_weight is None else np.asarray(sample_weight, float)
    bins = _bin_ids(conf, n_bins)
    total = np.bincount(bins, w, n_bins)
    gap = np.abs(np.bincount(bins, w * outcome, n_bins) - np.bincount(bins, w * conf, n_bins))
    return float(gap.sum() / total.sum())


def reliability_table(y: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Reliability curve from ``sklearn.calibration.calibration_curve`` (uniform bins), non-empty bins only.

    Columns: ``bin, lower, upper, mean_predicted, fraction_positive, count``.
    """
    outcome, conf = _calibration_pairs(y, prob)
    frac, mean_pred = calibration_curve(outcome, conf, n_bins=n_bins, strategy="uniform")
    counts = np.bincount(_bin_ids(conf, n_bins), minlength=n_bins)
    used = np.flatnonzero(counts)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame({"bin": used, "lower": edges[used], "upper": edges[used + 1],
                         "mean_predicted": mean_pred, "fraction_positive": frac, "count": counts[used]})


def choose_threshold(y: np.ndarray, score: np.ndarray, *, method: str = "youden",
                     target_sensitivity: float | None = None) -> dict[str, float]:
    """Pick a decision threshold on the positive-class score from the ROC curve (``sklearn.metrics.roc_curve``).

    ``method="youden"`` maximizes Youden's J = sensitivity + specificity - 1 (Youden 1950);
    ``method="sensitivity"`` takes the highest threshold whose sensitivity reaches ``target_sensitivity``.
    Choose it on validation data: chosen on the test set it flatters the test metrics.

    Returns ``{"threshold", "sensitivity", "specificity"}``; predict positive when ``score >= threshold``.
    """
    fpr, tpr, thr = skm.roc_curve(y, score)
    if method == "youden":
        i = int(np.argmax(tpr - fpr))
    elif method == "sensitivity":
        if target_sensitivity is None or not 0 < target_sensitivity <= 1:
            raise ArgumentError(f"target_sensitivity={target_sensitivity!r} must be in (0, 1]")
        i = int(np.argmax(tpr >= target_sensitivity - 1e-12))
    else:
        raise ArgumentError(f"method={method!r}: use 'youden' or 'sensitivity'")
    threshold = float(min(thr[i], 1.0))  # roc_curve's first threshold is +inf (predict nothing positive)
    return {"threshold": threshold, "sensitivity": float(tpr[i]), "specificity": float(1 - fpr[i])}


def bootstrap_replicates(y: np.ndarray, prob: np.ndarray, pred: np.ndarray, weights: Sequence[np.ndarray]
                         ) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Metrics and curves of every bootstrap resample (one weight vector each, see :func:`patient_bootstrap`).

    Returns ``(scores, roc, pr)``: ``scores[name]`` holds one value per resample, ``roc[c]`` / ``pr[c]`` an
    ``n_boot x len(CURVE_GRID)`` array of TPR (at FPR = grid) / precision (at recall = grid) for each scored
    class ``c`` (binary: class 1; multi-class: every class, one-vs-rest).
    """
    k = prob.shape[1]
    targets = [1] if k == 2 else list(range(k))
    scores: dict[str, list] = {}
    roc = {c: [] for c in targets}
    pr = {c: [] for c in targets}
    for w in weights:
        keep = w > 0
        values, curves = replicate_scores(y[keep], prob[keep], pred[keep], w[keep], targets)
        for name, v in values.items():
            scores.setdefault(name, []).append(v)
        for c, (roc_c, pr_c) in curves.items():
            roc[c].append(roc_c)
            pr[c].append(pr_c)
    return ({n: np.asarray(v) for n, v in scores.items()}, {c: np.vstack(v) for c, v in roc.items() if v},
            {c: np.vstack(v) for c, v in pr.items() if v})


def replicate_scores(y: np.ndarray, prob: np.ndarray, pred: np.ndarray, w: np.ndarray, targets: Sequence[int]
                     ) -> tuple[dict[str, float], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """The numbers of :func:`classification_scores` for one weighted resample, computed fast.

    Thousands of resamples make scikit-learn's per-call checks the bottleneck (~20 ms per resample), so here
    the threshold metrics are read off one ``sklearn.metrics.confusion_matrix`` and each class's ROC and PR
    curves are computed once (``roc_curve``, ``precision_recall_curve``) and reused for ROC AUC (``auc``),
    average precision (scikit-learn's own step sum) and the curve bands. Tests check equality with
    :func:`classification_scores`.
    """
    k = prob.shape[1]
    cm = skm.confusion_matrix(y, pred, labels=np.arange(k), sample_weight=w)
    tp = np.diag(cm)
    support, predicted, total = cm.sum(1), cm.sum(0), cm.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        recall, precision = tp / support, tp / predicted
        f1 = 2 * tp / (support + predicted)
        specificity = (total - support - predicted + tp) / (total - support)
    present = support > 0
    out = {"accuracy": tp.sum() / total, "balanced_accuracy": np.mean(recall[present])}
    aucs, aps, curves = [], [], {}
    for c in targets:
        y_c = (y == c).astype(np.int64)
        if y_c.min() == y_c.max():  # one class only: curves and AUCs undefined for this resample
            aucs.append(np.nan), aps.append(np.nan)
            curves[c] = (np.full(CURVE_GRID.size, np.nan), np.full(CURVE_GRID.size, np.nan))
            continue
        fpr, tpr, _ = skm.roc_curve(y_c, prob[:, c], sample_weight=w)
        prec, rec, _ = skm.precision_recall_curve(y_c, prob[:, c], sample_weight=w)
        aucs.append(skm.auc(fpr, tpr))
        aps.append(-np.sum(np.diff(rec) * prec[:-1]))  # sklearn's _binary_uninterpolated_average_precision
        curves[c] = (np.interp(CURVE_GRID, fpr, tpr), np.interp(CURVE_GRID, rec[::-1], prec[::-1]))
    if k == 2:
        out |= {"sensitivity": recall[1], "specificity": recall[0], "precision": precision[1], "f1": f1[1],
                "roc_auc": aucs[0], "pr_auc": aps[0],
                "brier": np.average(((y == 1) - prob[:, 1]) ** 2, weights=w)}
    else:
        out |= {"sensitivity": _nanmean(recall), "specificity": np.mean(np.nan_to_num(specificity)),
                "precision": _nanmean(precision), "f1": _nanmean(f1),
                "roc_auc": np.mean(aucs) if present.all() else np.nan,
                "pr_auc": np.mean(aps) if present.all() else np.nan, "brier": np.nan}
    out["ece"] = expected_calibration_error(y, prob, sample_weight=w)
    return {n: float(v) for n, v in out.items()}, curves


def _nanmean(values: np.ndarray) -> float:
    # scikit-learn's macro average with zero_division=np.nan leaves undefined classes out
    return float(np.nanmean(values)) if np.isfinite(values).any() else np.nan


def curve_point(y_bin: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC (TPR at FPR = :data:`CURVE_GRID`) and PR (precision at recall = grid) of the full data."""
    fpr, tpr, _ = skm.roc_curve(y_bin, score)
    prec, rec, _ = skm.precision_recall_curve(y_bin, score)
    return np.interp(CURVE_GRID, fpr, tpr), np.interp(CURVE_GRID, rec[::-1], prec[::-1])


def band(replicates: np.ndarray | None, ci: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile band of bootstrap curves (NaN where every replicate is undefined)."""
    if replicates is None or np.isnan(replicates).all():
        return np.full(CURVE_GRID.size, np.nan), np.full(CURVE_GRID.size, np.nan)
    with warnings.catch_warnings():  # grid points where every replicate is NaN give NaN bounds, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(replicates, [50 * (1 - ci), 50 * (1 + ci)], axis=0)
    return lo, hi


def fast_sklearn():
    """Context skipping scikit-learn's argument validation (thousands of bootstrap calls on checked arrays)."""
    return sklearn.config_context(skip_parameter_validation=True, assume_finite=True)
