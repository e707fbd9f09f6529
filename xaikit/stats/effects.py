"""Effect sizes, vectorized over the last axis so that bootstrap resamples are computed at once.

Hand-written because scipy and statsmodels do not provide them as functions (pingouin does, but it is
not a dependency): Cohen's d and Hedges' g (Hedges & Olkin 1985), the rank-biserial correlation of two
independent samples (Kerby 2014: 2U / (n_a n_b) - 1), the matched-pairs rank-biserial correlation
(King & Minium; (T+ - T-) / (T+ + T-)), Cohen's d_z for one sample, and Kendall's W from Friedman's
chi-square (W = chi2 / (n (k - 1))).
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from .._multiplicity import rank_biserial  # shared with the dataset audit (one implementation)

__all__ = ["EFFECTS", "cohen_d", "hedges_g", "rank_biserial", "paired_rank_biserial", "cohen_dz", "kendall_w",
           "no_spread"]

#: An SD at most this fraction of the data's magnitude is rounding noise, not variation: a standardized
#: difference divided by it would be +-inf or ~1e16 (groups constant within, e.g. a 0/1 ``pointing`` column).
SPREAD_RTOL = 1e-12


def no_spread(sd: np.ndarray, *samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """True where ``sd`` is zero or rounding noise relative to the largest absolute value of ``samples``."""
    scale = np.maximum.reduce([np.max(np.abs(np.asarray(s, float)), axis=axis) for s in samples])
    return np.asarray(sd) <= SPREAD_RTOL * scale


def _standardized(diff: np.ndarray, sd: np.ndarray, degenerate: np.ndarray) -> np.ndarray:
    """``diff / sd``, NaN where the SD is degenerate (a standardized effect is undefined there)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(diff / sd, dtype=float)
    return np.where(degenerate, np.nan, out) if out.ndim else (np.nan if degenerate else float(out))


def cohen_d(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """(mean_a - mean_b) / pooled SD (ddof 1); NaN when neither group varies (see :func:`no_spread`)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = a.shape[axis], b.shape[axis]
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = ((na - 1) * a.var(axis=axis, ddof=1) + (nb - 1) * b.var(axis=axis, ddof=1)) / (na + nb - 2)
    sd = np.sqrt(pooled)
    return _standardized(a.mean(axis=axis) - b.mean(axis=axis), sd, no_spread(sd, a, b, axis=axis))


def hedges_g(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Cohen's d times the small-sample correction J = 1 - 3 / (4 (n_a + n_b) - 9)."""
    n = np.asarray(a).shape[axis] + np.asarray(b).shape[axis]
    return cohen_d(a, b, axis) * (1 - 3 / (4 * n - 9))


def paired_rank_biserial(d: np.ndarray, axis: int = -1) -> np.ndarray:
    """(T+ - T-) / (T+ + T-) of the signed ranks of ``d`` (zeros dropped, as Wilcoxon's default does)."""
    d = np.moveaxis(np.asarray(d, float), axis, -1)
    ranks = stats.rankdata(np.where(d == 0, np.nan, np.abs(d)), axis=-1, nan_policy="omit")
    plus = np.nansum(np.where(d > 0, ranks, 0), axis=-1)
    minus = np.nansum(np.where(d < 0, ranks, 0), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (plus - minus) / (plus + minus)


def cohen_dz(d: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean / SD (ddof 1) of one sample (or of paired differences); NaN when ``d`` does not vary."""
    d = np.asarray(d, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = d.std(axis=axis, ddof=1)
    return _standardized(d.mean(axis=axis), sd, no_spread(sd, d, axis=axis))


def kendall_w(chi2: float, n: int, k: int) -> float:
    """Kendall's coefficient of concordance from Friedman's chi-square, ``n`` subjects, ``k`` conditions."""
    return float(chi2 / (n * (k - 1)))


#: Two-sample effect sizes by name.
EFFECTS = {"cohen_d": cohen_d, "hedges_g": hedges_g, "rank_biserial": rank_biserial}
