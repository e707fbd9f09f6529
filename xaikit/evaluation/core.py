"""One call shape for every metric: ``score(metric, model, inputs, explanation, ...)`` -> tidy table.

:func:`score_many` scores several methods on several metrics in one call and shares model passes between
them: the clean outputs and the fully perturbed inputs serve every method, one perturbation sweep serves
every curve that reads it (insertion and LeRF deletion are the same sweep), one noisy-input sweep serves
max-sensitivity and the local Lipschitz estimate, and the randomized model copies serve every method.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..domain import checked_once, domain_check_off
from ..errors import ArgumentError
from ..saliency import explain
from ..saliency.safety import guarded
from .context import make_context
from .cost import unit_weights
from .faithfulness import perturbation_curves
from .many import score_batches
from .registry import get_metric
from .runner import CONTROLS, METRIC_COLUMNS, _metric_jobs, check_params, run_metric

__all__ = ["score", "score_many", "METRIC_COLUMNS", "CONTROLS"]


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
        Ground-truth masks ``N x H x W`` (or one ``H x W`` for all) for localization metrics.
    seed : int
        Seed of the metric's random draws (noise, subsets, randomized weights).
    memory_budget : int, optional
        Bytes for activations; the saliency engine's memory plan sets how many inputs go in one pass.
    **params
        Metric parameters (see ``METRICS[metric].defaults``); recorded as columns.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`METRIC_COLUMNS`, the metric's extra columns and one column per parameter.

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
    # the user's inputs are checked against the training domain once; the metric's own copies never are
    with guarded(model), checked_once(model, _domain_inputs(inputs), where="score"):
        ctx = make_context(model, inputs, explanation, target=target, masks=masks, seed=seed,
                           memory_budget=memory_budget)
        return run_metric(info, ctx, params)


def score_many(model: nn.Module | Mapping[str, nn.Module], inputs: torch.Tensor, explanations: Mapping[str, Any],
               metrics: Sequence[str] | Mapping[str, Mapping] | None = None, *, masks: Any = None,
               controls: Sequence[str] = CONTROLS, target: Any = None, seed: int = 0,
               memory_budget: int | None = None, progress: bool = True, batch_size: int | None = None,
               cache_dir: str | os.PathLike | None = None, executor: Any = None,
               autocast: torch.dtype | None = None) -> pd.DataFrame:
    """Score many methods on many metrics with model passes shared; the controls are scored too.

    Parameters
    ----------
    model : nn.Module or dict
        The model, or ``{name: model}`` to score several models on the same inputs: ``explanations`` is then
        ``{name: {label: Explanation}}`` (each model's own maps) and the table gets a ``model`` column, which
        :func:`summarize` and :func:`rank_methods` keep apart.
    explanations : dict
        ``{label: Explanation}`` (e.g. from :func:`xaikit.saliency.explain_many`), same inputs in the same order.
    metrics : list of str or dict, optional
        Metric names, or ``{name: {param: value}}``; default every registered metric (localization ones only
        when ``masks`` are given).
    controls : sequence of str
        Control methods explained and scored beside the others (``()`` for none).
    batch_size : int, optional
        Images per unit of work (a unit is one method x metric x batch). ``None`` (default): all images in one
        batch. Metrics that draw random noise draw it per batch from ``seed``, so tables of different batch
        sizes differ in those metrics (not in deterministic ones).
    cache_dir : path, optional
        Disk cache of finished units (see :mod:`xaikit.evaluation.many`): an interrupted run recomputes at most
        the unit it was in; a rerun reads the cache. May be the folder given to ``explain_many``.
    executor : distributed.Client or concurrent.futures.Executor, optional
        Run each batch as one task there (the model is sent once per Dask worker); the table equals the local
        loop's. With a cluster, give ``cache_dir`` on a file system every worker can reach.
    autocast : torch.dtype, optional
        Run the metrics' model passes under :class:`torch.autocast` in this dtype (``torch.float16`` on CUDA,
        ``torch.bfloat16`` on CPU); check what it changes with :func:`xaikit.evaluation.autocast_parity`.
    Other parameters as in :func:`score`.

    Returns
    -------
    pandas.DataFrame
        The tables of :func:`score` for every (method, metric), concatenated; ``method`` holds the labels.

    Examples
    --------
    >>> table = score_many(net, images, maps, ["deletion", "sparseness"], batch_size=8,  # doctest: +SKIP
    ...                    cache_dir="study-cache/")
    """
    if isinstance(model, Mapping):
        options = dict(masks=masks, controls=controls, target=target, seed=seed, memory_budget=memory_budget,
                       progress=progress, batch_size=batch_size, cache_dir=cache_dir, executor=executor,
                       autocast=autocast)
        return _score_models(model, inputs, explanations, metrics, options)
    if not isinstance(explanations, Mapping) or not explanations:
        raise ArgumentError("explanations must be a non-empty dict {label: Explanation}.")
    jobs = [(info.name, params) for info, params in _metric_jobs(metrics, masks is not None)]
    explanations = {**dict(explanations), **_controls(model, inputs, explanations, controls, target)}
    # the user's inputs are checked against the training domain once, here; controls and metric copies never are
    with guarded(model), checked_once(model, _domain_inputs(inputs), where="score_many"):
        return score_batches(model, inputs, explanations, jobs, masks=masks, target=target, seed=seed,
                             memory_budget=memory_budget, batch_size=batch_size, cache_dir=cache_dir,
                             executor=executor, progress=progress, autocast=autocast,
                             weights=unit_weights(model, inputs, explanations, jobs))


def _score_models(models: Mapping[str, nn.Module], inputs: torch.Tensor, explanations: Any, metrics: Any,
                  options: dict) -> pd.DataFrame:
    """:func:`score_many` for each of ``{name: model}`` with its own ``explanations[name]``; a ``model`` column."""
    if not models:
        raise ArgumentError("score_many: the dict of models is empty; pass {name: model}.")
    missing = [name for name in models if not isinstance(explanations, Mapping) or name not in explanations]
    if missing:
        raise ArgumentError(f"score_many: with a dict of models, explanations must be {{model name: {{label: "
                            f"Explanation}}}}; no explanations for {missing}.")
    tables = [score_many(m, inputs, explanations[name], metrics, **options).assign(model=name)
              for name, m in models.items()]
    return pd.concat(tables, ignore_index=True)


def _domain_inputs(inputs: Any) -> Any:
    """The inputs the domain check sees: a tensor N x C x H x W, else nothing to check (make_context rejects it)."""
    ok = isinstance(inputs, torch.Tensor) and inputs.ndim == 4 and inputs.dtype.is_floating_point
    return inputs.detach() if ok and bool(torch.isfinite(inputs).all()) else None


def _controls(model: nn.Module, inputs: torch.Tensor, explanations: Mapping[str, Any], controls: Sequence[str],
              target: Any) -> dict:

    first = next(iter(explanations.values()))
    tgt = target if target is not None else getattr(first, "targets", "pred")
    ids = getattr(first, "image_ids", None)
    with domain_check_off():  # the user's inputs: checked once by the caller, not once per control
        return {c: explain(model, inputs, c, tgt, image_ids=ids, labels=getattr(first, "labels", None))
                for c in controls if c not in explanations}


def curves(model: nn.Module, inputs: torch.Tensor, explanations: Mapping[str, Any],
           kinds: Sequence[str] = ("deletion", "insertion"), *, target: Any = None, patch: int = 1, steps: int = 32,
           baseline: Any = 0.0, output: str = "logit", memory_budget: int | None = None,
           controls: Sequence[str] = CONTROLS) -> pd.DataFrame:
    """Perturbation curves of every method, tidy: ``image_id, method, curve, fraction, output`` (for figures).

    The ``controls`` (as in :func:`score_many`) get their curves too, so a figure can show the floor that a
    verdict such as "gradcam beats the random control on deletion" compares with (``()`` for none).
    """

    if not isinstance(explanations, Mapping) or not explanations:
        raise ArgumentError("explanations must be a non-empty dict {label: Explanation}.")
    explanations = {**dict(explanations), **_controls(model, inputs, explanations, controls, target)}
    shared: dict = {}
    frames = []
    with guarded(model), checked_once(model, _domain_inputs(inputs), where="curves"):
        for label, exp in explanations.items():
            ctx = make_context(model, inputs, exp, target=target, memory_budget=memory_budget, shared=shared,
                               label=str(label))
            frames.append(perturbation_curves(ctx, kinds, patch=patch, steps=steps, baseline=baseline, output=output))
    return pd.concat(frames, ignore_index=True)


def randomized_maps(model: nn.Module, inputs: torch.Tensor, explanation: Any, *, order: str = "cascading",
                    layers: Sequence[str] | None = None, seed: int = 0, memory_budget: int | None = None,
                    stages: str = "layer") -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Maps after each randomization stage (``{"original": ..., layer: N x H x W}``) and their similarity table.

    The table is what ``score("cascading_randomization", ...)`` returns; the maps are the ones it compared.
    ``stages="block"`` randomizes a convolution with its BatchNorm as one stage (``randomization_stages``).
    """
    if order not in ("cascading", "independent"):
        raise ArgumentError(f'order={order!r} must be "cascading" or "independent".')
    info = get_metric(f"{order}_randomization")
    with guarded(model), checked_once(model, _domain_inputs(inputs), where="randomized_maps"):
        ctx = make_context(model, inputs, explanation, seed=seed, memory_budget=memory_budget)
        table = run_metric(info, ctx, check_params(info, {"layers": layers, "stages": stages}))
    maps = {"original": ctx.maps.numpy(), **ctx.cache[("randomized_maps", order, seed)]}
    return maps, table
