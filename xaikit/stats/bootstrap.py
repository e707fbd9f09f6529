"""Bootstrap confidence intervals: scipy's for independent resampling, a cluster version by patient.

Images of one patient are not independent, so resampling images understates the uncertainty;
:func:`cluster_bootstrap` resamples whole patients (Field & Welsh 2007), which scipy does not offer. It and
:func:`percentile_ci` live in the leaf module :mod:`xaikit._resampling`, shared with ``xaikit.train``'s
patient-level metric CIs (one resampling rule for the whole kit).
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from .._resampling import N_BOOT, cluster_bootstrap, percentile_ci

__all__ = ["bootstrap_ci", "cluster_bootstrap", "percentile_ci"]


def bootstrap_ci(statistic: Callable[..., np.ndarray], samples: Sequence[np.ndarray], *, paired: bool = False,
                 n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0,
                 method: str = "percentile") -> tuple[float, float]:
    """CI of ``statistic(*samples, axis=-1)`` by :func:`scipy.stats.bootstrap` (NaN, NaN if ``n_boot == 0``).

    Parameters
    ----------
    statistic
        Vectorized: takes the samples and ``axis`` and reduces along it.
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
