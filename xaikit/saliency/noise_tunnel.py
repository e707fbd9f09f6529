"""NoiseTunnel over any method: ``explain(..., noise_tunnel={"type": "smoothgrad", "n": 16, "sigma": 0.15})``.

captum's ``NoiseTunnel`` wraps an attribution class and expands all noisy copies into one batch; here any
registered method is run on ``n`` noisy copies of each chunk (so its own memory chunking still holds) and the
maps are combined as captum does: ``"smoothgrad"`` the mean (Smilkov et al. 2017), ``"smoothgrad_sq"`` the mean
square (Hooker et al. 2019), ``"vargrad"`` the variance (Adebayo et al. 2018). Noise sd is ``sigma`` x (max - min)
of each input, the SmoothGrad convention of :func:`~xaikit.saliency.captum_methods.smoothgrad`; the noise of each
image comes from its own stream (seeded by ``seed`` and the image id), so a map does not depend on batching.
The target is fixed on the clean input (``"pred"`` is the clean prediction, not each noisy copy's).
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Mapping

import torch

from ..errors import ExplanationError

__all__ = ["TUNNELS", "check_noise_tunnel", "run_tunnel"]

TUNNELS = ("smoothgrad", "smoothgrad_sq", "vargrad")
_KEYS = {"type", "n", "sigma"}
_STREAM = 7_919  # offset of the tunnel's noise streams from the method's own per-image streams


def check_noise_tunnel(noise_tunnel: Any, info: Any) -> dict | None:
    """The checked spec ``{"type", "n", "sigma"}`` (defaults ``"smoothgrad"``, 16, 0.15), or None."""
    if noise_tunnel is None:
        return None
    if not isinstance(noise_tunnel, Mapping) or set(noise_tunnel) - _KEYS:
        raise ExplanationError(f"noise_tunnel={noise_tunnel!r} must be a dict with keys among {sorted(_KEYS)}, e.g. "
                               '{"type": "smoothgrad", "n": 16, "sigma": 0.15}.')
    spec = {"type": "smoothgrad", "n": 16, "sigma": 0.15, **noise_tunnel}
    if spec["type"] not in TUNNELS:
        raise ExplanationError(f"noise_tunnel type={spec['type']!r} is not known; use one of {list(TUNNELS)}.")
    n, sigma = spec["n"], spec["sigma"]
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= 10_000:
        raise ExplanationError(f"noise_tunnel n={n!r} must be an integer from 1 to 10000 (16-64 are usual).")
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not 0 <= float(sigma) < float("inf"):
        raise ExplanationError(f"noise_tunnel sigma={sigma!r} must be a finite number >= 0 (a fraction of each "
                               "input's max - min; 0.1-0.2 are usual).")
    if info.family == "control":
        raise ExplanationError(f"noise_tunnel is not defined for the control {info.name!r}: it does not look at the "
                               "model, so averaging it over noisy inputs says nothing. Drop noise_tunnel=.")
    return {"type": spec["type"], "n": int(n), "sigma": float(sigma)}


def run_tunnel(info: Any, ctx: Any, params: dict, tunnel: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``info.fn`` on ``tunnel["n"]`` noisy copies of ``ctx.inputs``, combined per ``tunnel["type"]``."""
    x = ctx.inputs
    flat = x.reshape(len(x), -1)
    sd = (tunnel["sigma"] * (flat.amax(1) - flat.amin(1))).view(-1, *([1] * (x.ndim - 1)))
    gens = [ctx.generator(int(i) + _STREAM) for i in ctx.index]
    sums: list = [None, None]
    squares: list = [None, None]
    for _ in range(tunnel["n"]):
        noise = torch.stack([torch.randn(x.shape[1:], generator=g, device=x.device, dtype=x.dtype) for g in gens])
        noisy = dataclasses.replace(ctx, inputs=(x + sd * noise).detach(), store={}, record=ctx.record)
        out = info.fn(noisy, **params)
        for j, part in enumerate(out if isinstance(out, tuple) else (out, None)):
            if part is not None:
                part = part.detach()
                sums[j] = part if sums[j] is None else sums[j] + part
                squares[j] = part.pow(2) if squares[j] is None else squares[j] + part.pow(2)
    ctx.record["noise_tunnel"] = dict(tunnel)
    combined = [None if s is None else _combine(s / tunnel["n"], q / tunnel["n"], tunnel["type"])
                for s, q in zip(sums, squares)]
    return combined[0], combined[1]


def _combine(mean: torch.Tensor, mean_sq: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "smoothgrad":
        return mean
    if kind == "smoothgrad_sq":
        return mean_sq
    return (mean_sq - mean.pow(2)).clamp_min(0)
