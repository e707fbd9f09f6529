"""Evaluate a classifier on a dataset: predictions, metrics with patient-level CIs, curves, calibration.

Example
-------
>>> ev = assess(model, test_set, classes=["normal", "pneumonia"], n_boot=1000)  # doctest: +SKIP
>>> ev.metrics                      # metric, value, ci_low, ci_high
>>> ev.plot_roc()                   # plotly Figure with the bootstrap band
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn import metrics as skm
from torch import nn
from torch.utils.data import Dataset

from .._resampling import N_BOOT
from ..checkpoint import check_preprocess
from ..domain import watch_domain
from ..errors import ArgumentError
from . import metrics as M
from ._data import check_labels, collate_eval, dataset_labels, infer, make_loader, resolve_classes, resolve_device

__all__ = ["Assessment", "assess", "assess_predictions"]


@dataclass
class Assessment:
    """What :func:`assess` measured. Every table is a pandas DataFrame.

    Attributes
    ----------
    classes : list of str
    predictions : one row per image: ``image_id, patient_id, label, pred, correct, prob_<class>...``
        (``patient_id`` is the dataset's own identifier, kept so errors can be traced; do not publish it).
    metrics : ``metric, value, ci_low, ci_high`` (95% patient-bootstrap percentile intervals by default).
    confusion : ``true, pred, count, fraction`` (fraction of the true class), one row per cell.
    report : scikit-learn's classification report: ``class, precision, recall, f1_score, support``.
    calibration : reliability curve, see :func:`~xaikit.train.metrics.reliability_table`.
    roc, pr : curves with bootstrap bands, one block per ``class`` (binary: the positive class only).
    thresholds : binary only: ``rule, threshold, sensitivity, specificity`` for the argmax, Youden and
        (if asked) target-sensitivity rules, measured on this data.
    threshold : the decision threshold used for ``pred`` (binary), ``None`` for argmax.
    """

    classes: list[str]
    predictions: pd.DataFrame
    metrics: pd.DataFrame
    confusion: pd.DataFrame
    report: pd.DataFrame
    calibration: pd.DataFrame
    roc: pd.DataFrame
    pr: pd.DataFrame
    thresholds: pd.DataFrame
    threshold: float | None = None
    params: dict = field(default_factory=dict)

    def metric(self, name: str) -> float:
        """The point value of one metric (e.g. ``"roc_auc"``)."""
        return float(self.metrics.set_index("metric").loc[name, "value"])

    def confusion_matrix(self) -> np.ndarray:
        """Counts as a K x K array (rows: true class, columns: predicted class)."""
        k = len(self.classes)
        return self.confusion.pivot(index="true", columns="pred", values="count").reindex(
            index=self.classes, columns=self.classes).to_numpy().reshape(k, k)

    def plot_confusion(self, normalize: bool = False):
        from ..viz.training import confusion_heatmap

        return confusion_heatmap(self.confusion, self.classes, normalize=normalize)

    def plot_roc(self):
        from ..viz.training import roc_curves

        return roc_curves(self.roc, self.metrics)

    def plot_pr(self):
        from ..viz.training import pr_curves

        return pr_curves(self.pr, self.metrics)

    def plot_reliability(self):
        from ..viz.training import reliability_diagram

        return reliability_diagram(self.calibration, self.metrics)


def assess(
    model: nn.Module,
    dataset: Dataset,
    *,
    classes: Sequence[str] | None = None,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    threshold: float | str | None = None,
    target_sensitivity: float | None = None,
    n_boot: int = N_BOOT,
    ci: float = 0.95,
    n_bins: int = 10,
    seed: int = 0,
    num_workers: int = 0,
    amp: bool = False,
    preprocess: Any = None,
) -> Assessment:
    """Predict ``dataset`` with ``model`` and measure it.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits ``N x K``; its mode is restored afterwards. If it carries ``xaikit_preprocess``
        (loaded checkpoint) and the dataset (``dataset.preprocess``) or ``preprocess`` says how images were
        prepared, the two must match (:func:`xaikit.checkpoint.check_preprocess`).
    dataset : Dataset
        Samples ``{"image", "label", "id", "patient_id", ...}``.
    classes : sequence of str, optional
        Class names in logit order; default ``model.xaikit_classes``, ``dataset.classes`` or ``"0"...``.
    threshold : float, "youden" or None
        Binary only: predict the positive class (class 1) when its probability is >= threshold.
        ``None`` takes the arg-max; ``"youden"`` picks Youden's J on *this* data (optimistic: prefer a float
        chosen on validation data with :func:`~xaikit.train.metrics.choose_threshold`).
    target_sensitivity : float, optional
        Binary only: also report the threshold reaching this sensitivity (in ``thresholds``).
    n_boot : int
        Bootstrap resamples of patients for the confidence intervals and curve bands (0: no intervals).
    ci : float
        Confidence level of the intervals (the keyword of :mod:`xaikit.stats` too).
    n_bins : int
        Bins of the reliability curve and ECE.

    Returns
    -------
    Assessment
    """
    device = resolve_device(device)
    if preprocess is None:
        preprocess = getattr(dataset, "preprocess", None)
    if preprocess is not None and getattr(model, "xaikit_preprocess", None) is not None:

        check_preprocess(model, preprocess)
    classes = resolve_classes(model, dataset, classes)
    check_labels(dataset_labels(dataset, "evaluation dataset"), classes, "evaluation dataset", need_two=False)
    loader = make_loader(dataset, batch_size, collate=collate_eval, num_workers=num_workers, device=device)
    model_device = next(model.parameters()).device
    model.to(device)

    try:
        with watch_domain(model, where="assess"):
            logits, labels, (ids, patients) = infer(model, loader, device, amp)
    finally:
        model.to(model_device)
    prob = torch.softmax(logits.double(), dim=1).numpy()
    if prob.shape[1] != len(classes):
        raise ArgumentError(f"the model returns {prob.shape[1]} logits but {len(classes)} classes were given")
    return assess_predictions(labels.numpy(), prob, classes=classes, image_ids=ids, patient_ids=patients,
                                threshold=threshold, target_sensitivity=target_sensitivity, n_boot=n_boot,
                                ci=ci, n_bins=n_bins, seed=seed)


def assess_predictions(
    labels: np.ndarray,
    prob: np.ndarray,
    *,
    classes: Sequence[str],
    image_ids: Sequence[str] | None = None,
    patient_ids: Sequence[str] | None = None,
    threshold: float | str | None = None,
    target_sensitivity: float | None = None,
    n_boot: int = N_BOOT,
    ci: float = 0.95,
    n_bins: int = 10,
    seed: int = 0,
) -> Assessment:
    """:func:`assess` from already computed class probabilities ``prob`` (``N x K``, rows summing to 1)."""
    y, prob, classes = np.asarray(labels, np.int64), np.asarray(prob, float), list(classes)
    n, k = prob.shape
    check_labels(y, classes, "labels", need_two=False)
    image_ids = list(image_ids) if image_ids is not None else [str(i) for i in range(n)]
    patient_ids = list(patient_ids) if patient_ids is not None else image_ids
    threshold = _resolve_threshold(threshold, y, prob, k)
    pred = prob.argmax(1) if threshold is None else (prob[:, 1] >= threshold).astype(np.int64)
    with M.fast_sklearn(), warnings.catch_warnings():
        # resamples missing a class leave some metrics undefined (NaN, skipped by the intervals): expected
        warnings.simplefilter("ignore", RuntimeWarning)
        reps, roc_reps, pr_reps = M.bootstrap_replicates(y, prob, pred, M.patient_bootstrap(patient_ids, n_boot,
                                                                                            seed))
    table = _metrics_table(y, prob, pred, reps, ci)
    roc, pr = _curves(y, prob, classes, roc_reps, pr_reps, ci)
    thresholds = _thresholds(y, prob, target_sensitivity) if k == 2 else pd.DataFrame()
    return Assessment(
        classes=classes,
        predictions=_predictions(image_ids, patient_ids, y, pred, prob, classes),
        metrics=table,
        confusion=_confusion(y, pred, classes),
        report=_report(y, pred, classes),
        calibration=M.reliability_table(y, prob, n_bins),
        roc=roc, pr=pr, thresholds=thresholds, threshold=threshold,
        params={"n_boot": n_boot, "ci": ci, "n_bins": n_bins, "seed": seed,
                "n_images": n, "n_patients": len(set(patient_ids))},
    )


def _resolve_threshold(threshold, y, prob, k) -> float | None:
    if threshold is None:
        return None
    if k != 2:
        raise ArgumentError(f"threshold={threshold!r} applies to binary tasks only; this one has {k} classes")
    if threshold == "youden":
        return M.choose_threshold(y, prob[:, 1], method="youden")["threshold"]
    if isinstance(threshold, str) or not 0.0 <= float(threshold) <= 1.0:
        raise ArgumentError(f"threshold={threshold!r}: use a probability in [0, 1], 'youden' or None")
    return float(threshold)


def _metrics_table(y, prob, pred, reps, ci) -> pd.DataFrame:
    rows = []
    for name, value in M.classification_scores(y, prob, pred).items():
        lo, hi = M.percentile_ci(reps[name], ci) if name in reps else (np.nan, np.nan)
        rows.append({"metric": name, "value": value, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high"])


def _curves(y, prob, classes, roc_reps, pr_reps, ci) -> tuple[pd.DataFrame, pd.DataFrame]:
    roc, pr = [], []
    for c in [1] if len(classes) == 2 else range(len(classes)):
        y_c = (y == c).astype(np.int64)
        if np.unique(y_c).size < 2:
            continue  # a class absent from the data has no curve
        tpr, precision = M.curve_point(y_c, prob[:, c])
        tpr_lo, tpr_hi = M.band(roc_reps.get(c), ci)
        p_lo, p_hi = M.band(pr_reps.get(c), ci)
        roc.append(pd.DataFrame({"class": classes[c], "fpr": M.CURVE_GRID, "tpr": tpr, "tpr_low": tpr_lo,
                                 "tpr_high": tpr_hi}))
        pr.append(pd.DataFrame({"class": classes[c], "recall": M.CURVE_GRID, "precision": precision,
                                "precision_low": p_lo, "precision_high": p_hi, "prevalence": y_c.mean()}))
    if not roc:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(roc, ignore_index=True), pd.concat(pr, ignore_index=True)


def _thresholds(y, prob, target_sensitivity) -> pd.DataFrame:
    if np.unique(y).size < 2:
        return pd.DataFrame()
    pred = prob.argmax(1)
    rows = [{"rule": "argmax", "threshold": 0.5,
             "sensitivity": skm.recall_score(y, pred, pos_label=1, zero_division=np.nan),
             "specificity": skm.recall_score(y, pred, pos_label=0, zero_division=np.nan)},
            {"rule": "youden", **M.choose_threshold(y, prob[:, 1], method="youden")}]
    if target_sensitivity is not None:
        rows.append({"rule": f"sensitivity>={target_sensitivity:g}",
                     **M.choose_threshold(y, prob[:, 1], method="sensitivity",
                                          target_sensitivity=target_sensitivity)})
    return pd.DataFrame(rows, columns=["rule", "threshold", "sensitivity", "specificity"])


def _predictions(image_ids, patient_ids, y, pred, prob, classes) -> pd.DataFrame:
    table = pd.DataFrame({"image_id": image_ids, "patient_id": patient_ids, "label": y, "pred": pred,
                          "correct": y == pred})
    for i, name in enumerate(classes):
        table[f"prob_{name}"] = prob[:, i]
    return table


def _confusion(y, pred, classes) -> pd.DataFrame:
    counts = skm.confusion_matrix(y, pred, labels=np.arange(len(classes)))
    totals = counts.sum(1, keepdims=True)
    frac = np.divide(counts, totals, out=np.full(counts.shape, np.nan), where=totals > 0)
    ti, pi = np.meshgrid(np.arange(len(classes)), np.arange(len(classes)), indexing="ij")
    return pd.DataFrame({"true": np.asarray(classes)[ti.ravel()], "pred": np.asarray(classes)[pi.ravel()],
                         "count": counts.ravel(), "fraction": frac.ravel()})


def _report(y, pred, classes) -> pd.DataFrame:
    report = skm.classification_report(y, pred, labels=np.arange(len(classes)), target_names=classes,
                                       output_dict=True, zero_division=np.nan)
    report.pop("accuracy", None)
    table = pd.DataFrame(report).T.rename(columns={"f1-score": "f1_score"})
    return table.rename_axis("class").reset_index()
