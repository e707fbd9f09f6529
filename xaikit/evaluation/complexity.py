"""Complexity: how concentrated a map is (a few pixels or everything a little)."""
from __future__ import annotations

import numpy as np

from .context import EvalContext
from .registry import register_metric

__all__: list[str] = []


def _magnitudes(ctx: EvalContext) -> np.ndarray:
    return np.abs(ctx.maps.reshape(len(ctx), -1).numpy())


@register_metric("sparseness", family="complexity", higher_is_better=True, uses_model=False, quantus="Sparseness")
def sparseness(ctx: EvalContext):
    """Gini index of |map| (1: all relevance in one pixel, 0: uniform). Chalasani et al. 2020 (ICML).

    Computed exactly as Quantus does: |map| scaled to a maximum of 1, plus ``1e-7`` on every pixel (which keeps
    an all-zero map defined: it scores 0).
    """
    a = _magnitudes(ctx)
    peak = a.max(1, keepdims=True)
    a = np.sort(a / np.where(peak > 0, peak, 1.0) + 1e-7, axis=1)
    p = a.shape[1]
    rank = np.arange(1, p + 1)
    return [({}, ((2 * rank - p - 1) * a).sum(1) / (p * a.sum(1)))]


@register_metric("entropy", family="complexity", higher_is_better=False, uses_model=False, quantus="Complexity")
def entropy(ctx: EvalContext):
    """Shannon entropy (nats) of |map| / sum |map|: low for focused maps. Bhatt et al. 2020 (IJCAI).

    An all-zero map has no distribution: NaN (Quantus divides by zero there too).
    """
    a = _magnitudes(ctx)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = a / a.sum(1, keepdims=True)
        return [({}, -(p * np.log(p + 1e-12)).sum(1))]
