"""Power analysis (statsmodels.stats.power): the effect detectable with the images at hand, and the
number of images needed for a given effect.

Effects are standardized mean differences (Cohen's d). For the rank tests the t-test numbers are scaled
by the asymptotic relative efficiency of 3/pi (Wilcoxon-Mann-Whitney vs t under normality; Lehmann 1975),
i.e. a rank test needs pi/3 times the images of the t-test.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.power import TTestIndPower, TTestPower

from ..errors import StatsError

__all__ = ["detectable_effect", "required_n", "power_table"]

_ARE = {"t": 1.0, "paired_t": 1.0, "mannwhitney": 3 / math.pi, "wilcoxon": 3 / math.pi}
_PAIRED = {"paired_t", "wilcoxon"}


def _check(test: str, alpha: float, power: float, n_tests: int) -> float:
    if test not in _ARE:
        raise StatsError(f"power: unknown test {test!r}; choose one of {sorted(_ARE)}.")
    if not (0 < alpha < 1 and 0 < power < 1) or n_tests < 1:
        raise StatsError(f"power: need 0 < alpha < 1, 0 < power < 1, n_tests >= 1; got {alpha}, {power}, {n_tests}.")
    return alpha / n_tests


def detectable_effect(n_a: int, n_b: int | None = None, *, test: str = "t", alpha: float = 0.05,
                      power: float = 0.8, n_tests: int = 1, alternative: str = "two-sided") -> float:
    """Smallest Cohen's d detected with probability ``power`` (Bonferroni level ``alpha / n_tests``).

    Parameters
    ----------
    n_a, n_b
        Group sizes (``n_b`` omitted: paired/one-sample tests use ``n_a`` pairs, two-sample ones assume
        equal groups).
    test
        ``"t"``, ``"mannwhitney"`` (two groups), ``"paired_t"``, ``"wilcoxon"`` (paired or one-sample).

    Examples
    --------
    >>> round(detectable_effect(20, 20), 2)
    0.91
    """
    level = _check(test, alpha, power, n_tests)
    for name, n in (("n_a", n_a), ("n_b", n_b)):
        if n is not None and (not np.isfinite(n) or n < 2):
            raise StatsError(f"detectable_effect: {name}={n}; a test needs at least 2 images per group (or pairs).")
    eff_n = n_a * _ARE[test]
    if test in _PAIRED:
        return float(TTestPower().solve_power(nobs=eff_n, alpha=level, power=power, alternative=alternative))
    ratio = (n_b if n_b is not None else n_a) / n_a
    return float(TTestIndPower().solve_power(nobs1=eff_n, ratio=ratio, alpha=level, power=power,
                                             alternative=alternative))


def required_n(effect: float, *, test: str = "t", alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0,
               n_tests: int = 1, alternative: str = "two-sided") -> int:
    """Images (per group for two-sample tests; pairs for paired ones) needed to detect Cohen's d ``effect``.

    Examples
    --------
    >>> required_n(0.5)
    64
    """
    level = _check(test, alpha, power, n_tests)
    if not np.isfinite(effect):
        raise StatsError(f"required_n: effect={effect} is not a finite Cohen's d; give the smallest effect worth "
                         "detecting, e.g. 0.5.")
    if not (np.isfinite(ratio) and ratio > 0):
        raise StatsError(f"required_n: ratio={ratio} must be a positive group-size ratio n_b / n_a.")
    if effect == 0:
        raise StatsError("required_n: an effect of 0 cannot be detected with any number of images.")
    if test in _PAIRED:
        n = TTestPower().solve_power(effect_size=abs(effect), alpha=level, power=power, alternative=alternative)
    else:
        n = TTestIndPower().solve_power(effect_size=abs(effect), ratio=ratio, alpha=level, power=power,
                                        alternative=alternative)
    return int(math.ceil(float(np.squeeze(n)) / _ARE[test]))


def power_table(tests: pd.DataFrame, *, alpha: float = 0.05, power: float = 0.8) -> pd.DataFrame:
    """Add ``detectable_d`` to a tests table: the effect each test could detect at the family's
    Bonferroni level (conservative for Holm), from its ``n_a``/``n_b`` and its ``test`` name."""
    m = int(tests["p_raw"].notna().sum()) or 1

    def one(row: Any) -> float:
        kind = _kind(str(row["test"]), row.get("n_b"))
        if kind is None or not np.isfinite(row["n_a"]) or row["n_a"] < 2:
            return np.nan
        n_b = None if kind in _PAIRED else row["n_b"]
        return detectable_effect(int(row["n_a"]), n_b, test=kind, alpha=alpha, power=power, n_tests=m)

    return tests.assign(detectable_d=tests.apply(one, axis=1), power=power)


def _kind(test: str, n_b: Any) -> str | None:
    if test.startswith("friedman"):
        return None
    if test.startswith(("mannwhitney", "wilcoxon")):
        return "wilcoxon" if test.startswith("wilcoxon") or not np.isfinite(n_b) else "mannwhitney"
    return "paired_t" if not np.isfinite(n_b) else "t"
