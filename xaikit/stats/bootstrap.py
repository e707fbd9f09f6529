"""Bootstrap confidence intervals: scipy's for independent resampling, a cluster version by patient.

Images of one patient are not independent, so resampling images understates the uncertainty;
:func:`cluster_bootstrap` resamples whole patients (Field & Welsh 2007), which scipy does not offer.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats

__all__ = ["bootstrap_ci", "cluster_bootstrap", "percentile_ci"]


def bootstrap_ci(statistic: Callable[..., np.ndarray], samples: Sequence[np.ndarray], *, paired: bool = False,
                 n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                 method: str = "percentile") -> tuple[float, float]:
    """CI of ``statistic(*samples, axis=-1)`` by :func:`scipy.stats.bootstrap` (NaN, NaN if ``n_boot == 0``).

    Parameters
    ----------
    statistic
        Vectorised: takes the samples and ``axis`` and reduces along it.
    samples
        One array per sample (resampled independently unless ``paired``).
    method
        ``"percentile"``, ``"basic"`` or ``"BCa"`` (scipy's names).
    """
    if n_boot == 0:
        return np.nan, np.nan
    data = tuple(np.asarray(s, float) for s in samples)
    with warnings.catch_warnings():
        # a degenerate resample distribution (all values equal) gives a NaN CI, which is what we report
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(data, statistic, n_resamples=n_boot, confidence_level=ci, method=method,
                              paired=paired, vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def cluster_bootstrap(statistic: Callable[..., float], clusters: Sequence[Sequence[np.ndarray]], *,
                      n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of ``statistic(*samples)`` resampling whole clusters within each sample.

    Parameters
    ----------
    statistic
        Takes one 1-D array per sample.
    clusters
        Per sample, the list of its clusters' value arrays (e.g. one array per patient).

    Returns
    -------
    numpy.ndarray
        ``n_boot`` replicates.
    """
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        drawn = [np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
                 for groups in clusters]
        out[b] = statistic(*drawn)
    return out


def percentile_ci(replicates: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN replicates ignored)."""
    tail = (1 - ci) / 2 * 100
    lo, hi = np.nanpercentile(replicates, [tail, 100 - tail])
    return float(lo), float(hi)
