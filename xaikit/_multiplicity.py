"""Numerics shared by the dataset audit and the statistics: p-value adjustment and the rank-biserial effect.

A leaf module (numpy, scipy, statsmodels only): :mod:`xaikit.data.audit` corrects its feature tests and measures
their effects with exactly the code :mod:`xaikit.stats` uses, without ``data`` importing ``stats`` (which sits
downstream of it, see docs/architecture.md). :func:`xaikit.stats.correct` wraps :func:`adjust_pvalues` into the
tidy tests table; :func:`xaikit.stats.rank_biserial` is :func:`rank_biserial`.
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

__all__ = ["CORRECTIONS", "adjust_pvalues", "rank_biserial"]

#: Corrections offered (statsmodels names).
CORRECTIONS = ("holm", "fdr_bh", "bonferroni", "hommel", "fdr_by", "sidak", "holm-sidak", "none")


def adjust_pvalues(p: np.ndarray, method: str = "holm", alpha: float = 0.05) -> np.ndarray:
    """Adjusted p-values of one family (no NaN; ``method`` one of :data:`CORRECTIONS`).

    Examples
    --------
    >>> adjust_pvalues(np.array([0.01, 0.04, 0.03]), "holm").round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    if method == "none":
        return p
    if method == "holm":
        return _holm(p)
    return multipletests(p, alpha=alpha, method=method)[1]


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment, identical to ``multipletests(p, method="holm")[1]`` (checked in tests).

    Written out because statsmodels' holm branch calls ``gc.collect()`` on every call (~0.1 s in a busy
    process), which dominates calibration runs over thousands of families.
    """
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1))
    out = np.empty_like(p)
    out[order] = np.minimum(stepped, 1.0)
    return out


def rank_biserial(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """2 U_a / (n_a n_b) - 1: +1 when every a exceeds every b, -1 the reverse."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    u = stats.mannwhitneyu(a, b, axis=axis, method="asymptotic").statistic
    return 2 * u / (a.shape[axis] * b.shape[axis]) - 1
