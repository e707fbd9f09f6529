"""One call shape for every metric: ``score(metric, model, inputs, explanation, ...)`` -> tidy table.

:func:`score_many` scores several methods on several metrics in one call and shares model passes between
them: the clean outputs and the fully perturbed inputs serve every method, one perturbation sweep serves
every curve that reads it (insertion and LeRF deletion are the same sweep), one noisy-input sweep serves
max-sensitivity and the local Lipschitz estimate, and the randomised model copies serve every method.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import ArgumentError, EvaluationError
from ..saliency.safety import guarded
from .context import EvalContext, make_context
from .registry import METRICS, MetricInfo, get_metric

__all__ = ["score", "score_many", "SCORE_COLUMNS", "CONTROLS"]

#: Columns every score table starts with (then the extra columns of the metric and its parameters).
SCORE_COLUMNS = ["image_id", "label", "pred", "target", "method", "metric", "family", "value", "higher_is_better"]
#: Control maps scored beside every method (Adebayo et al. 2018): model-independent noise and edges.
CONTROLS = ("random", "sobel")


def score(metric: str, model: nn.Module, inputs: torch.Tensor, explanation: Any, *, target: Any = None,
          masks: Any = None, seed: int = 0, memory_budget: int | None = None, **params: Any) -> pd.DataFrame:
    """Score one explanation with one metric; one row per image (per layer/similarity where the metric has them).

    Parameters
    ----------
    metric : str
        A key of :data:`METRICS` (``sorted(METRICS)`` lists them).
    model : torch.nn.Module
        The classifier that was explained; left exactly as it was.
    inputs : torch.Tensor
        ``N x C x H x W``, the inputs the maps explain.
    explanation : Explanation or tensor
        An :class:`xaikit.saliency.Explanation` (needed by metrics that recompute maps), or maps ``N x H x W``.
    target : optional
        Class explained; default the explanation's targets (``"pred"`` for plain maps).
    masks : optional
        Ground-truth masks ``N x H x W`` (or one ``H x W`` for all) for localisation metrics.
    seed : int
        Seed of the metric's random draws (noise, subsets, randomised weights).
    memory_budget : int, optional
        Bytes for activations; the saliency engine's memory plan sets how many inputs go in one pass.
    **params
        Metric parameters (see ``METRICS[metric].defaults``); recorded as columns.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SCORE_COLUMNS`, the metric's extra columns and one column per parameter.

    Examples
    --------
    >>> import torch
    >>> from xaikit.models import build_model
    >>> from xaikit.saliency import explain
    >>> net = build_model("small_cnn", num_classes=2).eval()
    >>> x = torch.rand(2, 1, 32, 32)
    >>> table = score("deletion", net, x, explain(net, x, "gradient"), steps=8)
    >>> table[["method", "metric", "value"]].shape
    (2, 3)
    """
    info = get_metric(metric)
    params = check_params(info, params)
    with guarded(model):  # also around make_context: target="pred" runs the model (in eval mode)
        ctx = make_context(model, inputs, explanation, target=target, masks=masks, seed=seed,
                           memory_budget=memory_budget)
        return run_metric(info, ctx, params)


def score_many(model: nn.Module, inputs: torch.Tensor, explanations: Mapping[str, Any],
               metrics: Sequence[str] | Mapping[str, Mapping] | None = None, *, masks: Any = None,
               controls: Sequence[str] = CONTROLS, target: Any = None, seed: int = 0,
               memory_budget: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Score many methods on many metrics with model passes shared; the controls are scored too.

    Parameters
    ----------
    explanations : dict
        ``{label: Explanation}`` (e.g. from :func:`xaikit.saliency.explain_many`), same inputs in the same order.
    metrics : list of str or dict, optional
        Metric names, or ``{name: {param: value}}``; default every registered metric (localisation ones only
        when ``masks`` are given).
    controls : sequence of str
        Control methods explained and scored beside the others (``()`` for none).
    Other parameters as in :func:`score`.

    Returns
    -------
    pandas.DataFrame
        The tables of :func:`score` for every (method, metric), concatenated; ``method`` holds the labels.
    """
    if not isinstance(explanations, Mapping) or not explanations:
        raise ArgumentError("explanations must be a non-empty dict {label: Explanation}.")
    jobs = _metric_jobs(metrics, masks is not None)
    explanations = {**dict(explanations), **_controls(model, inputs, explanations, controls, target)}
    shared: dict = {}
    tables = []
    with guarded(model), tqdm(total=len(jobs) * len(explanations), desc="evaluate", disable=not progress) as bar:
        for label, exp in explanations.items():
            ctx = make_context(model, inputs, exp, target=target, masks=masks, seed=seed,
                               memory_budget=memory_budget, shared=shared, label=str(label))
            for info, params in jobs:
                bar.set_postfix_str(f"{label}: {info.name}")
                tables.append(run_metric(info, ctx, params))
                bar.update(1)
    return pd.concat(tables, ignore_index=True)


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


def _controls(model: nn.Module, inputs: torch.Tensor, explanations: Mapping[str, Any], controls: Sequence[str],
              target: Any) -> dict:
    from ..saliency import explain

    first = next(iter(explanations.values()))
    tgt = target if target is not None else getattr(first, "targets", "pred")
    ids = getattr(first, "image_ids", None)
    return {c: explain(model, inputs, c, tgt, image_ids=ids, labels=getattr(first, "labels", None))
            for c in controls if c not in explanations}


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
    if isinstance(value, nn.Module):  # e.g. data_randomisation's reference model: recorded by its class name
        return f"{type(value).__name__} (model in memory)"
    return value


def _warn_nan(table: pd.DataFrame, metric: str, method: str) -> None:
    bad = table["value"].isna()
    if bad.any():
        ids = table.loc[bad, "image_id"].astype(str).unique().tolist()
        warnings.warn(f"{metric} of {method!r}: {int(bad.sum())} values are undefined (NaN), e.g. a constant map "
                      f"has no rank correlation; images {ids[:5]}{' ...' if len(ids) > 5 else ''}. They stay in the "
                      "table as NaN.", stacklevel=4)


def curves(model: nn.Module, inputs: torch.Tensor, explanations: Mapping[str, Any],
           kinds: Sequence[str] = ("deletion", "insertion"), *, target: Any = None, patch: int = 1, steps: int = 32,
           baseline: Any = 0.0, output: str = "logit", memory_budget: int | None = None) -> pd.DataFrame:
    """Perturbation curves of every method, tidy: ``image_id, method, curve, fraction, output`` (for figures)."""
    from .faithfulness import perturbation_curves

    shared: dict = {}
    frames = []
    with guarded(model):
        for label, exp in explanations.items():
            ctx = make_context(model, inputs, exp, target=target, memory_budget=memory_budget, shared=shared,
                               label=str(label))
            frames.append(perturbation_curves(ctx, kinds, patch=patch, steps=steps, baseline=baseline, output=output))
    return pd.concat(frames, ignore_index=True)


def randomised_maps(model: nn.Module, inputs: torch.Tensor, explanation: Any, *, order: str = "cascading",
                    layers: Sequence[str] | None = None, seed: int = 0, memory_budget: int | None = None,
                    stages: str = "layer") -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Maps after each randomisation stage (``{"original": ..., layer: N x H x W}``) and their similarity table.

    The table is what ``score("cascading_randomisation", ...)`` returns; the maps are the ones it compared.
    ``stages="block"`` randomises a convolution with its BatchNorm as one stage (``randomisation_stages``).
    """
    if order not in ("cascading", "independent"):
        raise ArgumentError(f'order={order!r} must be "cascading" or "independent".')
    info = get_metric(f"{order}_randomisation")
    with guarded(model):
        ctx = make_context(model, inputs, explanation, seed=seed, memory_budget=memory_budget)
        table = run_metric(info, ctx, check_params(info, {"layers": layers, "stages": stages}))
    maps = {"original": ctx.maps.numpy(), **ctx.cache[("randomised_maps", order, seed)]}
    return maps, table
