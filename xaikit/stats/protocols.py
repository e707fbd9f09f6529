"""The two seed analyses, reproduced exactly, so that theirs and ours can run on the same data.

Both choose each test by the same decision rule, recorded row by row (``shapiro_p_a``, ``shapiro_p_b``,
``levene_p`` and a sentence in ``decision``): Shapiro-Wilk on each group and Levene's test (scipy's
default, centred on the median) at .05; Student's t-test when both groups look normal *and* their
variances equal, else Mann-Whitney U (two-sided).

- :func:`nimanui` (the course-project notebook): two groups per method and region; significant when
  p < alpha / k, k = the method's number of tests (Bonferroni), alpha .05; no effect size.
- :func:`sumer2023` (Sümer et al. 2023, MLHC): the reference group (unaffected faces) against each other
  group (five syndromes) per region, one family per method (5 syndromes x 3 regions = 15 tests);
  alpha .001 with Bonferroni over the family; Cohen's d.

Both read ``value`` (default ``mean``, Sümer's c_r) from a region-scores table and return a tests
table, with ``p_adj = min(1, k p)`` and the per-test threshold in ``alpha_per_test``.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

from .._registry import Registry
from ..errors import StatsError
from ._table import drop_nan, finish, groups_of, require
from .effects import cohen_d
from .groups import _pairs

__all__ = ["PROTOCOLS", "register_protocol", "nimanui", "sumer2023", "run_protocol", "choose_test"]

#: Seed protocols by name.
PROTOCOLS: Registry[Callable[..., pd.DataFrame]] = Registry("protocol", error=StatsError)

#: Level of the Shapiro-Wilk and Levene pre-tests in both seeds.
PRETEST_ALPHA = 0.05


def register_protocol(name: str) -> Callable[[Callable[..., pd.DataFrame]], Callable[..., pd.DataFrame]]:
    """Decorator adding an analysis protocol to :data:`PROTOCOLS`."""
    return PROTOCOLS.register(name)


def run_protocol(name: str, scores: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """Run ``PROTOCOLS[name]`` on a region-scores table."""
    return PROTOCOLS.lookup(name)(scores, **kwargs)


def choose_test(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """The seeds' decision rule on two samples: Shapiro-Wilk per group and Levene, then t or Mann-Whitney.

    Returns
    -------
    dict
        ``test`` (``"student_t"`` or ``"mannwhitney"``), ``statistic``, ``p_raw``, the pre-test p-values
        ``shapiro_p_a``, ``shapiro_p_b``, ``levene_p`` and ``decision``, a sentence saying why.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> choose_test(rng.normal(0, 1, 30), rng.normal(0, 5, 30))["test"]   # normal, unequal variances
    'mannwhitney'
    """
    with warnings.catch_warnings():
        # a constant group: scipy warns, Shapiro gives p = 1 and Levene NaN; the decision below says so
        warnings.filterwarnings("ignore", message=".*[Ii]nput data .*range zero.*")
        warnings.filterwarnings("ignore", message="invalid value encountered", category=RuntimeWarning)
        sw_a, sw_b = float(stats.shapiro(a).pvalue), float(stats.shapiro(b).pvalue)
        lev = float(stats.levene(a, b).pvalue)
    normal = sw_a > PRETEST_ALPHA and sw_b > PRETEST_ALPHA
    equal = lev > PRETEST_ALPHA
    if normal and equal:
        res, test = stats.ttest_ind(a, b, equal_var=True), "student_t"
        why = f"Shapiro p = {sw_a:.3g}, {sw_b:.3g} > .05 and Levene p = {lev:.3g} > .05: Student's t"
    else:
        res, test = stats.mannwhitneyu(a, b, alternative="two-sided"), "mannwhitney"
        why = (f"Shapiro p = {sw_a:.3g}, {sw_b:.3g} (not normal in both groups): Mann-Whitney U" if not normal else
               "Levene p undefined (both groups constant): Mann-Whitney U" if np.isnan(lev) else
               f"Shapiro p = {sw_a:.3g}, {sw_b:.3g} > .05 but Levene p = {lev:.3g} <= .05 (unequal variances): "
               "Mann-Whitney U")
    return {"test": test, "statistic": float(res.statistic), "p_raw": float(res.pvalue), "shapiro_p_a": sw_a,
            "shapiro_p_b": sw_b, "levene_p": lev, "decision": why}


@register_protocol("nimanui")
def nimanui(scores: pd.DataFrame, group: str = "label", value: str = "mean", alpha: float = 0.05) -> pd.DataFrame:
    """The seed notebook's analysis: Shapiro + Levene -> Student t or Mann-Whitney, Bonferroni alpha / k.

    Exactly two groups per method and region; no effect size.
    """
    return _per_method(scores, group, value, alpha, None, "nimanui", effect=False)


@register_protocol("sumer2023")
def sumer2023(scores: pd.DataFrame, group: str = "label", value: str = "mean", alpha: float = 0.001,
              reference: Any = None) -> pd.DataFrame:
    """Sümer et al. (2023): Shapiro + Levene -> Student t or Mann-Whitney; alpha .001 / k; Cohen's d.

    Parameters
    ----------
    scores
        Region scores (one row per image, method and region).
    group
        Column of the groups (the diagnosis).
    value
        Column tested (``mean``: Sümer's c_r).
    alpha
        Family-wise level; each test is significant when p < alpha / k, k = the method's number of tests.
    reference
        The reference level (the paper's unaffected class), compared with each other level: with six
        groups and three regions one method's family holds 5 x 3 = 15 tests. ``None``: the data must
        have exactly two groups.

    Returns
    -------
    pandas.DataFrame
        The tests table plus ``alpha``, ``alpha_per_test``, ``family_size``, ``value`` and the decision
        columns (``shapiro_p_a``, ``shapiro_p_b``, ``levene_p``, ``decision``).
    """
    return _per_method(scores, group, value, alpha, reference, "sumer2023", effect=True)


def _comparisons(data: pd.DataFrame, group: str, reference: Any, name: str) -> list[tuple[Any, Any]]:
    levels = sorted(data[group].unique().tolist(), key=str)
    if reference is None and len(levels) != 2:
        raise StatsError(f"{name}: without reference= the protocol compares exactly two groups; {group!r} has "
                         f"levels {levels}. Pass reference=<level> to compare it with each other level.")
    return _pairs(data[group], None, reference, where=name)


def _per_method(scores: pd.DataFrame, group: str, value: str, alpha: float, reference: Any, name: str,
                effect: bool) -> pd.DataFrame:
    require(scores, ["method", "region", group, value], name)
    data = drop_nan(scores, [value, group], name, label=("region",), value=value)
    comparisons = _comparisons(data, group, reference, name)
    rows = []
    for (method,), sub in groups_of(data, ("method",)):
        cells = list(groups_of(sub, ("region",)))
        k = len(cells) * len(comparisons)
        for (region,), cell in cells:
            for level_a, level_b in comparisons:
                a, b = (cell.loc[cell[group] == lv, value].to_numpy(float) for lv in (level_a, level_b))
                where = f"method={method}, region={region}, {group}={level_a} vs {level_b}"
                row = _one(a, b, where, name, value, effect)
                row.update(family=name, method=method, region=region, group_a=str(level_a), group_b=str(level_b))
                rows.append(_bonferroni(row, k, alpha))
    return finish(rows)


def _one(a: np.ndarray, b: np.ndarray, where: str, name: str, value: str, effect: bool) -> dict[str, Any]:
    if len(a) < 3 or len(b) < 3:
        raise StatsError(f"{name}: {where} has {len(a)} and {len(b)} images per group; Shapiro-Wilk needs at "
                         "least 3.")
    row = choose_test(a, b)  # two constant groups: Levene is NaN, so Mann-Whitney (never a t of +-inf)
    eff = float(cohen_d(a, b)) if effect else np.nan
    if effect and np.isnan(eff):
        warnings.warn(f"{name}: {where}: cohen_d is undefined ({value!r} does not vary within the groups); "
                      "reported as NaN.", stacklevel=4)
    row.update(n_a=len(a), n_b=len(b), effect_size=eff, effect_name="cohen_d" if effect else "none", value=value)
    return row


def _bonferroni(row: dict[str, Any], k: int, alpha: float) -> dict[str, Any]:
    p = row["p_raw"]
    row.update(p_adj=min(1.0, p * k) if not np.isnan(p) else np.nan, correction="bonferroni",
               significant=bool(p < alpha / k), alpha=alpha, alpha_per_test=alpha / k, family_size=k)
    return row
