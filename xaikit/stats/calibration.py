"""Calibration under the null: how often does a family of region tests reject when nothing is there?

:func:`null_fwer` runs the whole pipeline (maps -> region scores -> group tests -> one corrected family)
on data where the null holds by construction — random maps, or maps with a real class difference whose
labels were permuted — and reports, per repetition, whether any test in the family was declared
significant. The share of such repetitions estimates the family-wise error rate, which Holm's correction
should keep at or below ``alpha``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import StatsError
from ..regions import grid, region_scores
from .correction import correct
from .groups import compare_groups

__all__ = ["null_fwer"]


def null_fwer(n_reps: int = 200, *, mode: str = "random_maps", n_images: int = 40, size: int = 16,
              grid_shape: tuple[int, int] = (2, 3), n_methods: int = 2, test: str = "mannwhitney",
              value: str = "mass_frac", correction: str = "holm", alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """One row per repetition: ``rep, n_tests, any_raw`` (some p_raw <= alpha) and ``any_adj`` (some
    corrected test significant). ``df["any_adj"].mean()`` estimates the family-wise error rate.

    Parameters
    ----------
    mode
        ``"random_maps"``: white-noise maps, labels half and half. ``"permuted_labels"``: maps with a
        strong class effect in one region, labels then permuted at random.
    n_images, size, grid_shape, n_methods
        Images per repetition, map side, region grid, and "methods" (independent maps of the same images).
    """

    if mode not in ("random_maps", "permuted_labels"):
        raise StatsError(f"null_fwer: mode must be 'random_maps' or 'permuted_labels'; got {mode!r}.")
    rng = np.random.default_rng(seed)
    regions = grid(*grid_shape, (size, size))
    rows = []
    for rep in range(n_reps):
        labels = np.repeat([0, 1], [n_images // 2, n_images - n_images // 2])
        tables = []
        for m in range(n_methods):
            maps = _maps(rng, labels, size, mode)
            shown = rng.permutation(labels) if mode == "permuted_labels" else labels
            tables.append(region_scores(maps, regions, labels=shown, method=f"m{m}"))
        tests = compare_groups(pd.concat(tables, ignore_index=True), "label", value=value, test=test, n_boot=0,
                               correction="none")
        tests = correct(tests, correction, alpha)
        rows.append({"rep": rep, "n_tests": len(tests), "any_raw": bool((tests["p_raw"] <= alpha).any()),
                     "any_adj": bool(tests["significant"].fillna(False).any())})
    return pd.DataFrame(rows).assign(mode=mode, correction=correction, alpha=alpha)


def _maps(rng: np.random.Generator, labels: np.ndarray, size: int, mode: str) -> np.ndarray:
    maps = rng.exponential(1.0, (len(labels), size, size))
    if mode == "permuted_labels":
        maps[labels == 1, : size // 2, : size // 3] += 3.0  # a real class effect, hidden by the permutation
    return maps
