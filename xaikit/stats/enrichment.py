"""Is relevance denser in a region than its area predicts? One-sample tests on the log density ratio."""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .._resampling import N_BOOT
from ..errors import StatsError
from ._table import as_tuple, cell_name, check_resampling, drop_nan, finish, groups_of, require
from .bootstrap import bootstrap_ci
from .correction import correct
from .effects import cohen_dz, no_spread, paired_rank_biserial

__all__ = ["ONE_SAMPLE_TESTS", "region_enrichment"]

#: One-sample tests of "median/mean log ratio = 0": name -> (test, effect function, effect name).
ONE_SAMPLE_TESTS = {
    "wilcoxon": (lambda x, alt: stats.wilcoxon(x, alternative=alt), paired_rank_biserial, "rank_biserial"),
    "t": (lambda x, alt: stats.ttest_1samp(x, 0.0, alternative=alt), cohen_dz, "cohen_dz"),
}


def region_enrichment(scores: pd.DataFrame, *, value: str = "density_ratio",
                      by: str | Sequence[str] = ("method", "region"), test: str = "wilcoxon",
                      floor: float = 1e-6, aggregate: str | None = None, n_boot: int = N_BOOT, ci: float = 0.95,
                      seed: int = 0, alternative: str = "two-sided", correction: str = "holm",
                      alpha: float = 0.05) -> pd.DataFrame:
    """Test, per cell of ``by``, whether the log density ratio (mass fraction / area fraction) differs from 0.

    A density ratio of 1 means a region holds exactly the share of relevance its area predicts; the test
    runs on ``log(ratio)`` so that halving and doubling weigh the same. Ratios of 0 (no relevance in the
    region) are raised to ``floor`` before the log, with a warning saying how many.

    Parameters
    ----------
    scores
        Region scores with ``value`` (default ``density_ratio``) and the ``by`` columns.
    test
        ``"wilcoxon"`` (signed-rank; effect: matched-pairs rank-biserial) or ``"t"`` (one-sample t;
        effect: Cohen's d_z).
    aggregate
        ``"patient"``: average the log ratios of each patient's images first.
    alternative
        ``"two-sided"``, ``"greater"`` (enriched) or ``"less"`` (depleted).

    Returns
    -------
    pandas.DataFrame
        Tests table (one row per cell) plus ``estimate`` (geometric-mean density ratio), ``value`` and the
        ``by`` columns. ``ci_low``/``ci_high`` bound the effect size (bootstrap over images).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"region": ["lung"] * 8, "density_ratio": [1.5, 2.0, 1.8, 2.2, 1.1, 1.7, 2.5, 1.9]})
    >>> res = region_enrichment(df, by="region", n_boot=0)
    >>> round(float(res["p_raw"].iloc[0]), 4), float(res["effect_size"].iloc[0])
    (0.0078, 1.0)
    """
    by = as_tuple(by)
    check_resampling("region_enrichment", ci=ci, n_boot=n_boot, alternative=alternative, seed=seed)
    if test not in ONE_SAMPLE_TESTS:
        raise StatsError(f"region_enrichment: unknown test {test!r}; choose one of {sorted(ONE_SAMPLE_TESTS)}.")
    data = _log_ratios(scores, value, by, floor, aggregate)
    run, effect, effect_name = ONE_SAMPLE_TESTS[test]
    rows = []
    for keys, sub in groups_of(data, by):
        x = np.sort(sub["log_ratio"].to_numpy(float))  # sorted: results do not depend on row order
        if len(x) < 2:
            raise StatsError(f"region_enrichment: cell ({cell_name(keys, by)}) has {len(x)} observation(s); "
                             "at least 2 are needed.")
        rows.append({**dict(zip(by, keys)), **_one(x, run, effect, effect_name, test, alternative, n_boot, ci, seed),
                     "value": value})
    return correct(finish(rows), correction, alpha)


def _log_ratios(scores: pd.DataFrame, value: str, by: tuple[str, ...], floor: float,
                aggregate: str | None) -> pd.DataFrame:
    require(scores, [value, *by] + (["patient_id"] if aggregate else []), "region_enrichment")
    if aggregate not in (None, "patient"):
        raise StatsError(f"region_enrichment: aggregate accepts None or 'patient'; got {aggregate!r}.")
    data = drop_nan(scores, [value], "region_enrichment", label=("region",), value=value)
    ratio = data[value].to_numpy(float)
    if (ratio < 0).any():
        raise StatsError(f"region_enrichment: {value!r} has negative values; density ratios of signed maps are "
                         "not ratios of masses. Score with sign='positive' or 'absolute'.")
    low = ratio < floor
    if low.any():
        warnings.warn(f"region_enrichment: {int(low.sum())} of {len(ratio)} ratios are below {floor:g} "
                      f"(no relevance in the region) and were set to {floor:g} before the log.", stacklevel=3)
    data = data.assign(log_ratio=np.log(np.maximum(ratio, floor)))
    if aggregate:
        return data.groupby([*by, "patient_id"], observed=True, sort=True)["log_ratio"].mean().reset_index()
    return data


def _one(x: np.ndarray, run: Any, effect: Any, effect_name: str, test: str, alternative: str, n_boot: int,
         ci: float, seed: int) -> dict[str, Any]:
    if np.all(x == 0):
        stat, p = np.nan, np.nan
        warnings.warn("region_enrichment: every log ratio of a cell is 0; the test is undefined (p NaN).",
                      stacklevel=4)
    elif test == "t" and no_spread(np.std(x, ddof=1), x):
        stat, p = np.nan, np.nan
        warnings.warn(f"region_enrichment: every log ratio of a cell equals {x[0]:.4g}; a t-test (and d_z) is "
                      "undefined without variation (p NaN). test='wilcoxon' is defined for such data.", stacklevel=4)
    else:
        res = run(x, alternative)
        stat, p = float(res.statistic), float(res.pvalue)
    lo, hi = bootstrap_ci(effect, (x,), n_boot=n_boot, ci=ci, seed=seed)
    return {"family": "region_enrichment", "test": test, "n_a": len(x), "n_b": np.nan, "statistic": stat,
            "p_raw": p, "effect_size": float(effect(x)), "effect_name": effect_name, "ci_low": lo, "ci_high": hi,
            "estimate": float(np.exp(x.mean()))}
