"""Running one metric on one context: the jobs a call asks for, parameter checks and the metric's tidy rows.

Shared by :func:`xaikit.evaluation.score`/``score_many`` (:mod:`.core`), the batched and cached loop (:mod:`.many`)
and the cost plan (:mod:`.cost`), which all import it; it imports none of them.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import ArgumentError, EvaluationError
from .context import EvalContext
from .registry import METRICS, MetricInfo, get_metric

__all__ = ["METRIC_COLUMNS", "CONTROLS", "run_metric", "check_params"]


#: Columns every score table starts with (then the extra columns of the metric and its parameters).
METRIC_COLUMNS = ["image_id", "label", "pred", "target", "method", "metric", "family", "value", "higher_is_better"]


#: Control maps scored beside every method (Adebayo et al. 2018): model-independent noise and edges.
CONTROLS = ("random", "sobel")


def _metric_jobs(metrics: Any, have_masks: bool) -> list[tuple[MetricInfo, dict]]:
    if metrics is None:
        return [(m, dict(m.defaults)) for m in METRICS.values()
                if (have_masks or not m.needs_masks) and not m.needs_reference]
    if isinstance(metrics, str):
        metrics = [metrics]
    items = metrics.items() if isinstance(metrics, Mapping) else ((m, {}) for m in metrics)
    jobs = []
    for name, params in items:
        info = get_metric(name)
        jobs.append((info, check_params(info, dict(params))))
    return jobs


def check_params(info: MetricInfo, params: dict) -> dict:
    """Merge ``params`` into the metric's defaults; unknown names raise an error listing the accepted ones."""
    accepted = [p for p in inspect.signature(info.fn).parameters if p != "ctx"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ArgumentError(f"metric {info.name!r} has no parameter(s) {unknown}; it accepts {accepted or 'none'}.")
    return {**info.defaults, **params}


def run_metric(info: MetricInfo, ctx: EvalContext, params: dict) -> pd.DataFrame:
    """Run one metric on a built context and return its tidy rows."""
    if info.needs_masks and ctx.masks is None:
        raise ArgumentError(f"metric {info.name!r} needs masks=... (ground-truth masks N x H x W, e.g. the lesion "
                            "masks of the phantom samples).")
    parts = info.fn(ctx, **params)
    frames = [_frame(info, ctx, params, extra, values) for extra, values in parts]
    table = pd.concat(frames, ignore_index=True)
    _warn_nan(table, info.name, ctx.label)
    return table


def _frame(info: MetricInfo, ctx: EvalContext, params: dict, extra: dict, values: Any) -> pd.DataFrame:
    values = np.asarray(values, dtype=float).reshape(-1)
    if values.shape[0] != len(ctx):
        raise EvaluationError(f"metric {info.name!r} returned {values.shape[0]} values for {len(ctx)} images; a "
                              "registered metric must return one value per image (a bug in the metric).")
    cols: dict[str, Any] = {
        "image_id": list(ctx.image_ids), "label": _ints(ctx.labels, len(ctx)), "pred": _ints(ctx.preds, len(ctx)),
        "target": ctx.targets.numpy().astype(int), "method": ctx.label, "metric": info.name,
        "family": info.family, "value": values, "higher_is_better": info.higher_is_better}
    cols.update(extra)
    cols.update({k: _cell(v) for k, v in params.items()})
    return pd.DataFrame(cols)


def _ints(values: Any, n: int) -> pd.array:
    if values is None:
        return pd.array([pd.NA] * n, dtype="Int64")
    return pd.array(torch.as_tensor(values).long().tolist(), dtype="Int64")


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return str(list(value))
    if isinstance(value, nn.Module):  # e.g. data_randomization's reference model: recorded by its class name
        return f"{type(value).__name__} (model in memory)"
    return value


def _warn_nan(table: pd.DataFrame, metric: str, method: str) -> None:
    bad = table["value"].isna()
    if bad.any():
        ids = table.loc[bad, "image_id"].astype(str).unique().tolist()
        warnings.warn(f"{metric} of {method!r}: {int(bad.sum())} values are undefined (NaN), e.g. a constant map "
                      f"has no rank correlation; images {ids[:5]}{' ...' if len(ids) > 5 else ''}. They stay in the "
                      "table as NaN.", stacklevel=4)
