"""A mosaic of phantoms, for documentation and a first look at the data."""
from __future__ import annotations

import os

import numpy as np
from skimage import io

from .._util import atomic_path
from ..errors import ArgumentError
from .cohort import draw_chest_set

__all__ = ["grid_image", "write_grid"]


def grid_image(n: int = 16, *, seed: int = 0, size: int = 224, cols: int = 4, gap: int = 2) -> np.ndarray:
    """Mosaic of ``n`` phantoms (normal and pneumonia, some with the corner marker), row by row.

    Parameters
    ----------
    n : int
        Number of phantoms.
    seed : int
        Seed of the set (:func:`~xaikit.phantom.draw_chest_set`, prevalence 0.5, marker rates 0.5 / 0.25).
    size : int
        Side of each phantom in pixels.
    cols : int
        Phantoms per row.
    gap : int
        Black pixels between tiles.

    Returns
    -------
    numpy.ndarray
        float32 ``(rows * (size + gap) - gap, cols * (size + gap) - gap)`` in [0, 1].

    Examples
    --------
    >>> from xaikit.phantom import grid_image
    >>> grid_image(4, size=32, cols=2, gap=0).shape
    (64, 64)
    """
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise ArgumentError(f"cols must be a positive int; got {cols!r}.")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ArgumentError(f"gap must be a non-negative int; got {gap!r}.")
    phantoms = draw_chest_set(n, seed=seed, size=size, marker_rate_pos=0.5, marker_rate_neg=0.25)
    rows = -(-n // cols)
    step = size + gap
    out = np.zeros((rows * step - gap, cols * step - gap), np.float32)
    for i, ph in enumerate(phantoms):
        r, c = divmod(i, cols)
        out[r * step : r * step + size, c * step : c * step + size] = ph.image
    return out


def write_grid(path: str | os.PathLike, n: int = 16, *, seed: int = 0, size: int = 224, cols: int = 4) -> None:
    """Write :func:`grid_image` as an 8-bit PNG (atomically), e.g. ``docs/phantom_grid.png`` for the README."""
    pixels = np.round(grid_image(n, seed=seed, size=size, cols=cols) * 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        io.imsave(tmp, pixels, check_contrast=False)
