"""Pneumonia-like opacities: patchy, blurred consolidations confined to the lungs."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["draw_lesion"]

_LUNGS = ("right_lung", "left_lung")


def _pick_centre(rng: np.random.Generator, lung: np.ndarray, v: np.ndarray) -> tuple[int, int]:
    """A pixel well inside ``lung``, lower zones more likely (pneumonia favours the lower lobes)."""
    core = ndimage.binary_erosion(lung, iterations=max(1, lung.shape[0] // 40))
    rows, cols = np.nonzero(core if core.any() else lung)
    weight = 1.0 + 1.5 * np.clip(v[rows, cols] + 0.3, 0, None)
    k = rng.choice(rows.size, p=weight / weight.sum())
    return int(rows[k]), int(cols[k])


def _patch(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, centre: tuple[int, int]) -> np.ndarray:
    """One opacity: a cluster of 3-6 elongated Gaussian blobs around ``centre`` (peak about 1)."""
    cu, cv = u[centre], v[centre]
    radius = rng.uniform(0.07, 0.16)
    field = np.zeros_like(u)
    for _ in range(int(rng.integers(3, 7))):
        bu, bv = cu + rng.normal(0, 0.6 * radius), cv + rng.normal(0, 0.6 * radius)
        su, sv = radius * rng.uniform(0.4, 0.9, size=2)
        field = np.maximum(field, np.exp(-0.5 * (((u - bu) / su) ** 2 + ((v - bv) / sv) ** 2)))
    return field


def draw_lesion(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, masks: dict[str, np.ndarray], air: float, px: float
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Density to add, the lesion mask (inside the lungs), and the parameters drawn.

    The opacity partly refills the aerated lung (``strength`` of ``air``) with a mottled, consolidation
    texture (smoothed noise); the mask is where the smoothed patch exceeds a third of its peak.
    """
    both = rng.random() < 0.3
    first = int(rng.integers(2))
    sides = (0, 1) if both else (first,)
    lungs = masks["right_lung"] | masks["left_lung"]
    field = np.zeros_like(u)
    n_patches = 0
    for side in sides:
        for _ in range(int(rng.integers(1, 3))):
            field = np.maximum(field, _patch(rng, u, v, _pick_centre(rng, masks[_LUNGS[side]], v)))
            n_patches += 1
    texture = ndimage.gaussian_filter(rng.standard_normal(u.shape), max(0.025 / px, 0.7))
    texture = 1 + 0.45 * texture / (texture.std() + 1e-12)
    strength = float(rng.uniform(0.5, 0.9))
    inside = ndimage.gaussian_filter(lungs.astype(np.float64), max(0.01 / px, 0.5))
    extra = strength * air * field * np.clip(texture, 0.2, None) * inside
    mask = (field > 0.35) & lungs
    params = {"n_patches": n_patches, "sides": [_LUNGS[s] for s in sides], "strength": strength}
    return extra, mask, params
