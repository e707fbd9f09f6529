"""Robustness: does the map stay put when the input moves a little?

``sensitivity_max`` is captum's ``sensitivity_max`` (Yeh et al. 2019), with its own torch noise.

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


@register_metric("sensitivity_max", family="robustness", higher_is_better=False, reexplains=True,
                 quantus="MaxSensitivity", defaults={"radius": 0.02, "n_samples": 10})
def sensitivity_max(ctx: EvalContext, radius: float = 0.02, n_samples: int = 10):
    """captum's maximum sensitivity: largest relative change of the map under uniform noise in ``±radius``.

    ``captum.metrics.sensitivity_max`` (Frobenius norm of the map difference over the norm of the map),
    recomputing maps of all noisy copies through one explanation function. Yeh et al. 2019 (NeurIPS).
    """
    from captum.metrics import sensitivity_max as captum_sensitivity

    if radius <= 0 or n_samples < 1:
        raise ArgumentError(f"radius={radius} must be > 0 and n_samples={n_samples} >= 1.")
    gen = torch.Generator().manual_seed(ctx.seed)
    n = len(ctx)

    def perturb(inputs: torch.Tensor) -> torch.Tensor:
        noise = (torch.rand(inputs.shape, generator=gen, dtype=inputs.dtype) * 2 - 1) * radius
        return inputs + noise.to(inputs.device)

    def explanation_func(*args):
        inputs = args[0][0] if isinstance(args[0], tuple) else args[0]  # captum may pass its tuple form
        if inputs is ctx.inputs:  # captum's first call: the maps being scored, no need to recompute them
            return (ctx.maps.to(device=inputs.device, dtype=inputs.dtype)[:, None],)
        index = torch.arange(n).repeat_interleave(len(inputs) // n)  # captum repeats each input, image-major
        return (ctx.explain(inputs, index).to(device=inputs.device, dtype=inputs.dtype)[:, None],)

    values = captum_sensitivity(explanation_func, ctx.inputs, perturb_func=perturb, n_perturb_samples=n_samples,
                                max_examples_per_batch=n * n_samples)
    return [({}, values.detach().double().numpy())]
