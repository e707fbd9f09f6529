"""Patient (cluster) bootstrap and percentile intervals: the one implementation that ``train`` and ``stats`` share.

A leaf module (numpy and pandas only) so that ``train`` (model metrics with patient-level CIs) and ``stats``
(effect sizes with patient-level CIs) resample patients the same way without ``train`` importing ``stats``
(which sits downstream of it, see docs/architecture.md). Images of one patient are not independent: resampling whole
patients with replacement (Field & Welsh 2007) keeps that dependence. scipy's ``bootstrap`` resamples
observations only, hence this small hand-written version.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

__all__ = ["N_BOOT", "cluster_counts", "patient_bootstrap", "cluster_bootstrap", "percentile_ci"]

#: The kit's one default number of bootstrap resamples (classifier metrics, statistics, evaluation rankings).
N_BOOT = 2000


def cluster_counts(n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n_clusters`` clusters is drawn in one resample of ``n_clusters`` with replacement."""
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters))


def patient_bootstrap(patient_ids: Sequence, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield ``n_boot`` per-image weight vectors, each one resample of patients with replacement.

    The weight of an image is the number of times its patient was drawn (0 when left out), so metrics with
    ``sample_weight`` equal the metrics of the concatenated resample.

    Examples
    --------
    >>> w = next(patient_bootstrap(["a", "a", "b"], 1, seed=0))
    >>> w[0] == w[1], float(w[::2].sum())   # images of one patient share a weight; two patients drawn
    (np.True_, 2.0)
    """
    codes, uniques = pd.factorize(pd.Series(list(patient_ids), dtype=object))
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield cluster_counts(len(uniques), rng)[codes].astype(float)


def cluster_bootstrap(statistic: Callable[..., float], clusters: Sequence[Sequence[np.ndarray]], *,
                      n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
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

    Examples
    --------
    >>> reps = cluster_bootstrap(np.mean, [[np.array([1.0, 1.0]), np.array([3.0])]], n_boot=200)
    >>> bool(((reps >= 1) & (reps <= 3)).all())
    True
    """
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        drawn = [np.concatenate([groups[i]
                                 for i in np.repeat(np.arange(len(groups)), cluster_counts(len(groups), rng))])
                 for groups in clusters]
        out[b] = statistic(*drawn)
    return out


def percentile_ci(replicates: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates; NaN replicates (resamples where the statistic is undefined)
    are ignored, and all-NaN replicates give ``(nan, nan)``.

    Examples
    --------
    >>> [round(v, 6) for v in percentile_ci(np.arange(101.0), ci=0.9)]
    [5.0, 95.0]
    """
    values = np.asarray(replicates, float)
    if values.size == 0 or np.isnan(values).all():
        return np.nan, np.nan
    lo, hi = np.nanpercentile(values, [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)
