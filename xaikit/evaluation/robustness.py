"""Robustness: does the map stay put when the input moves a little?

``max_sensitivity`` (Yeh et al. 2019) and ``local_lipschitz`` (Alvarez-Melis & Jaakkola 2018) read the same
sweep of noisy copies: all ``N x n_samples`` copies are explained in one :func:`xaikit.saliency.explain` call
(chunked by the engine's memory plan), so each needs exactly ``n_samples`` batch explanations.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ArgumentError
from .context import EvalContext
from .registry import register_metric

__all__: list[str] = []

NOISES = ("uniform", "gaussian")
_DEFAULTS = {"noise": "uniform", "scale": 0.05, "n_samples": 10}


def noisy_sweep(ctx: EvalContext, noise: str, scale: float, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """``(map distances N x S, input distances N x S)`` for ``n_samples`` noisy copies per image (cached).

    Noise is drawn with ``numpy.random.RandomState(seed)`` in Quantus' order (sample-major, the whole batch
    at once), so a Quantus run after ``np.random.seed(seed)`` perturbs identically.
    """
    if noise not in NOISES:
        raise ArgumentError(f"noise={noise!r} is not one of {NOISES}.")
    if not scale > 0 or not isinstance(n_samples, int) or n_samples < 1:
        raise ArgumentError(f"scale={scale!r} must be > 0 and n_samples={n_samples!r} an integer >= 1.")
    key = ("noisy", noise, float(scale), n_samples)
    if key in ctx.cache:
        return ctx.cache[key]
    n = len(ctx)
    rs = np.random.RandomState(ctx.seed)
    shape = (n, int(np.prod(ctx.inputs.shape[1:])))
    draws = [rs.uniform(-scale, scale, shape) if noise == "uniform" else rs.normal(0.0, scale, shape)
             for _ in range(n_samples)]
    delta = torch.from_numpy(np.stack(draws, 1)).reshape(n * n_samples, *ctx.inputs.shape[1:])
    x = ctx.inputs.double().cpu().repeat_interleave(n_samples, 0)
    noisy = (x + delta).to(ctx.inputs.dtype)  # image-major: image i's copies are rows i*S ... i*S + S - 1
    maps = ctx.explain(noisy.to(ctx.inputs.device), torch.arange(n).repeat_interleave(n_samples))
    ref = ctx.maps.repeat_interleave(n_samples, 0)
    map_dist = (maps - ref).reshape(n, n_samples, -1).norm(dim=2).numpy()
    input_dist = (noisy.double().cpu() - x).reshape(n, n_samples, -1).norm(dim=2).numpy()
    ctx.cache[key] = (map_dist, input_dist)
    return ctx.cache[key]


@register_metric("max_sensitivity", family="robustness", higher_is_better=False, reexplains=True,
                 quantus="MaxSensitivity", defaults=dict(_DEFAULTS))
def max_sensitivity(ctx: EvalContext, noise: str = "uniform", scale: float = 0.05, n_samples: int = 10):
    """Largest ``||map(x + d) - map(x)|| / ||map(x)||`` over noisy copies (Frobenius norms). Yeh et al. 2019.

    ``noise="uniform"`` draws d in ``[-scale, scale]`` per pixel (Quantus' ``lower_bound``), ``"gaussian"``
    with standard deviation ``scale``. An all-zero map has no relative change: NaN.
    """
    map_dist, _ = noisy_sweep(ctx, noise, scale, n_samples)
    norm = ctx.maps.reshape(len(ctx), -1).norm(dim=1).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return [({}, np.where(norm > 0, map_dist.max(1) / norm, np.nan))]


@register_metric("local_lipschitz", family="robustness", higher_is_better=False, reexplains=True,
                 quantus="LocalLipschitzEstimate", defaults=dict(_DEFAULTS))
def local_lipschitz(ctx: EvalContext, noise: str = "uniform", scale: float = 0.05, n_samples: int = 10):
    """Largest ``||map(x + d) - map(x)|| / ||d||`` over noisy copies (Euclidean). Alvarez-Melis & Jaakkola 2018.

    Quantus adds 1e-10 to the denominator; so do we, to match it.
    """
    map_dist, input_dist = noisy_sweep(ctx, noise, scale, n_samples)
    return [({}, (map_dist / (input_dist + 1e-10)).max(1))]
