"""The two seed analyses, reproduced exactly, so that theirs and ours can run on the same data.

- :func:`nimanui` (the course-project notebook): per method and region, two groups; Shapiro-Wilk on each
  group and Levene at .05 decide between Student's t-test (normal, equal variances) and Mann-Whitney U;
  significant when p < alpha / k, k = the method's number of tests (Bonferroni); no effect size.
- :func:`sumer2023` (Sümer et al. 2023, MLHC): Shapiro-Wilk at .05 decides between a t-test (Welch's
  when the group sizes differ) and Mann-Whitney U; alpha = .001 with Bonferroni over each method's tests;
  Cohen's d.

Both read ``value`` (default ``mean``, Sümer's c_r) from a region-scores table and return a tests
table, with ``p_adj = min(1, k p)`` and the per-test threshold in ``alpha_per_test``.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import StatsError
from ._table import drop_nan, finish, groups_of, require
from .effects import cohen_d
from .groups import _no_variance

__all__ = ["PROTOCOLS", "register_protocol", "nimanui", "sumer2023", "run_protocol"]

#: Seed protocols by name.
PROTOCOLS: dict[str, Callable[..., pd.DataFrame]] = {}


def register_protocol(name: str) -> Callable[[Callable[..., pd.DataFrame]], Callable[..., pd.DataFrame]]:
    """Decorator adding an analysis protocol to :data:`PROTOCOLS`."""
    def add(fn: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
        PROTOCOLS[name] = fn
        return fn
    return add


def run_protocol(name: str, scores: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """Run ``PROTOCOLS[name]`` on a region-scores table."""
    if name not in PROTOCOLS:
        raise StatsError(f"Unknown protocol {name!r}; available: {sorted(PROTOCOLS)}.")
    return PROTOCOLS[name](scores, **kwargs)


def _normal(*samples: np.ndarray) -> bool:
    return all(stats.shapiro(s).pvalue > 0.05 for s in samples)


@register_protocol("nimanui")
def nimanui(scores: pd.DataFrame, group: str = "label", value: str = "mean", alpha: float = 0.05) -> pd.DataFrame:
    """The seed notebook's analysis: Shapiro + Levene -> Student t or Mann-Whitney, Bonferroni alpha / k."""
    def choose(a: np.ndarray, b: np.ndarray) -> tuple[str, Any, float, str]:
        if _normal(a, b) and stats.levene(a, b).pvalue > 0.05:
            return "student_t", stats.ttest_ind(a, b), np.nan, "none"
        return "mannwhitney", stats.mannwhitneyu(a, b, alternative="two-sided"), np.nan, "none"

    return _per_method(scores, group, value, alpha, choose, "nimanui")


@register_protocol("sumer2023")
def sumer2023(scores: pd.DataFrame, group: str = "label", value: str = "mean", alpha: float = 0.001) -> pd.DataFrame:
    """Sümer et al. (2023): Shapiro -> t-test (Welch if sizes differ) or Mann-Whitney; alpha .001 / k; Cohen's d."""
    def choose(a: np.ndarray, b: np.ndarray) -> tuple[str, Any, float, str]:
        d = float(cohen_d(a, b))
        if _normal(a, b):
            equal = len(a) == len(b)
            return ("student_t" if equal else "welch_t"), stats.ttest_ind(a, b, equal_var=equal), d, "cohen_d"
        return "mannwhitney", stats.mannwhitneyu(a, b, alternative="two-sided"), d, "cohen_d"

    return _per_method(scores, group, value, alpha, choose, "sumer2023")


def _per_method(scores: pd.DataFrame, group: str, value: str, alpha: float, choose: Callable,
                name: str) -> pd.DataFrame:
    require(scores, ["method", "region", group, value], name)
    data = drop_nan(scores, [value, group], name, label=("region",), value=value)
    levels = sorted(data[group].unique().tolist(), key=str)
    if len(levels) != 2:
        raise StatsError(f"{name}: the protocol compares exactly two groups; {group!r} has levels {levels}.")
    rows = []
    for (method,), sub in groups_of(data, ("method",)):
        cells = list(groups_of(sub, ("region",)))
        k = len(cells)
        for (region,), cell in cells:
            a, b = (cell.loc[cell[group] == lv, value].to_numpy(float) for lv in levels)
            if len(a) < 3 or len(b) < 3:
                raise StatsError(f"{name}: method={method}, region={region} has {len(a)} and {len(b)} images per "
                                 "group; Shapiro-Wilk needs at least 3.")
            test, res, eff, eff_name = choose(a, b)
            statistic, p = float(res.statistic), float(res.pvalue)
            if test.endswith("_t") and _no_variance(a, b):
                warnings.warn(f"{name}: method={method}, region={region}: {value!r} is constant within both groups; "
                              "the t-test is undefined there (p NaN, not significant).", stacklevel=3)
                statistic, p = np.nan, np.nan
            if eff_name != "none" and np.isnan(eff):
                warnings.warn(f"{name}: method={method}, region={region}: {eff_name} is undefined ({value!r} does "
                              "not vary within the groups); reported as NaN.", stacklevel=3)
            p_adj = min(1.0, p * k) if not np.isnan(p) else np.nan
            rows.append({"family": name, "test": test, "method": method, "region": region, "group_a": str(levels[0]),
                         "group_b": str(levels[1]), "n_a": len(a), "n_b": len(b), "statistic": statistic,
                         "p_raw": p, "p_adj": p_adj, "correction": "bonferroni", "effect_size": eff,
                         "effect_name": eff_name, "significant": bool(p < alpha / k), "alpha": alpha,
                         "alpha_per_test": alpha / k, "family_size": k, "value": value})
    return finish(rows)
