"""Boxes: train a one-box regressor and score boxes (IoU, hit rate at IoU 0.5, mAP@0.5 from torchmetrics).

A box model here is any network whose 4 outputs are ``x0, y0, x1, y1`` in units of the image size (0..1), e.g.
``build_model("small_cnn", num_classes=4)``: one organ, one box per image, so a regression head is an honest
detector on a CPU. mAP@0.5 is torchmetrics' COCO-style ``MeanAveragePrecision`` (pycocotools backend).

Example
-------
>>> history = fit_boxes(model, images, boxes, epochs=30)                     # doctest: +SKIP
>>> per_image, summary = box_scores(predict_boxes(model, images), boxes, patient_ids=pids)  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, generalized_box_iou_loss

from .._modes import eval_mode
from .._resampling import N_BOOT, patient_bootstrap, percentile_ci
from ..errors import ArgumentError
from ._tensors import fit_tensors

__all__ = ["fit_boxes", "predict_boxes", "box_scores", "mean_average_precision"]


def fit_boxes(model: nn.Module, images: torch.Tensor, boxes: torch.Tensor, *, epochs: int = 30, batch_size: int = 16,
              lr: float = 3e-3, seed: int = 0) -> pd.DataFrame:
    """Train ``model`` (outputs ``N x 4``) to regress ``boxes`` (``N x 4``, image-size units) with smooth L1 +
    generalized IoU loss (Rezatofighi et al. 2019), AdamW and a one-cycle schedule. Returns ``epoch, loss``; the
    model's train/eval modes are restored."""
    if images.ndim != 4 or boxes.shape != (len(images), 4):
        raise ArgumentError(f"images must be N x C x H x W and boxes N x 4; got {tuple(images.shape)} and "
                            f"{tuple(boxes.shape)}.")
    return fit_tensors(model, images, boxes, _box_loss, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)


def _box_loss(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    ordered = torch.cat([torch.minimum(pred[:, :2], pred[:, 2:]), torch.maximum(pred[:, :2], pred[:, 2:])], 1)
    return F.smooth_l1_loss(pred, truth, beta=0.05) + generalized_box_iou_loss(ordered, truth, reduction="mean")


def predict_boxes(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """``N x 4`` boxes (image-size units, corners ordered) from ``model`` in eval mode; its mode is restored."""
    with eval_mode(model), torch.no_grad():
        out = torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    return torch.cat([torch.minimum(out[:, :2], out[:, 2:]), torch.maximum(out[:, :2], out[:, 2:])], 1)


def mean_average_precision(pred: torch.Tensor, truth: torch.Tensor, scores: torch.Tensor | None = None,
                           iou_threshold: float = 0.5) -> float:
    """COCO-style AP at one IoU threshold for one predicted and one true box per image (torchmetrics)."""
    from torchmetrics.detection import MeanAveragePrecision

    scores = torch.ones(len(pred)) if scores is None else torch.as_tensor(scores, dtype=torch.float32)
    metric = MeanAveragePrecision(box_format="xyxy", iou_thresholds=[float(iou_threshold)])
    label = torch.zeros(1, dtype=torch.long)
    metric.update([{"boxes": p[None].float(), "scores": s[None], "labels": label} for p, s in zip(pred, scores)],
                  [{"boxes": t[None].float(), "labels": label} for t in truth])
    return float(metric.compute()["map"])


def box_scores(pred: torch.Tensor, truth: torch.Tensor, *, scores: torch.Tensor | None = None,
               patient_ids: Sequence | None = None, image_ids: Sequence | None = None, n_boot: int = N_BOOT,
               ci: float = 0.95, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IoU per image, and mean IoU, hit rate (IoU >= 0.5) and mAP@0.5 with patient-bootstrap percentile CIs.

    Returns ``per_image`` (``image_id, iou, hit``) and ``summary`` (``metric, value, ci_low, ci_high, n_images``).
    The mAP interval comes from fewer resamples (``min(n_boot, 200)``: each runs the COCO evaluation).
    ``ci`` is the intervals' confidence level.
    """
    pred, truth = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(truth, dtype=torch.float64)
    if pred.shape != truth.shape or pred.ndim != 2 or pred.shape[1] != 4:
        raise ArgumentError(f"pred and truth must both be N x 4 boxes; got {tuple(pred.shape)} and "
                            f"{tuple(truth.shape)}.")
    n = len(pred)
    image_ids = [str(i) for i in (image_ids if image_ids is not None else range(n))]
    patient_ids = list(patient_ids) if patient_ids is not None else image_ids
    iou = box_iou(pred, truth).diagonal().numpy()
    per_image = pd.DataFrame({"image_id": image_ids, "iou": iou, "hit": iou >= 0.5})
    weights = list(patient_bootstrap(patient_ids, n_boot, seed))
    rows = [_row("iou", iou, weights, ci), _row("hit_rate_50", iou >= 0.5, weights, ci)]
    sc = torch.ones(n) if scores is None else torch.as_tensor(scores, dtype=torch.float32)
    reps = [mean_average_precision(pred[_draw(w)], truth[_draw(w)], sc[_draw(w)]) for w in weights[:200]]
    lo, hi = percentile_ci(np.asarray(reps), ci) if reps else (np.nan, np.nan)
    rows.append({"metric": "map_50", "value": mean_average_precision(pred, truth, sc), "ci_low": lo, "ci_high": hi,
                 "n_images": n})
    return per_image, pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high", "n_images"])


def _draw(w: np.ndarray) -> np.ndarray:
    """Image indices of one patient resample (each image repeated as often as its patient was drawn)."""
    return np.repeat(np.arange(len(w)), w.astype(int))


def _row(name: str, values: np.ndarray, weights: list[np.ndarray], ci: float) -> dict:
    values = np.asarray(values, float)
    reps = [np.average(values, weights=w) for w in weights if w.sum() > 0]
    lo, hi = percentile_ci(np.asarray(reps), ci) if reps else (np.nan, np.nan)
    return {"metric": name, "value": float(values.mean()), "ci_low": lo, "ci_high": hi, "n_images": len(values)}
