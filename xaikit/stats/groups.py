"""Compare a region score between groups of images (classes, correct vs wrong predictions, any column)."""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .._resampling import N_BOOT
from ..errors import StatsError
from ._table import as_tuple, cell_name, check_resampling, drop_nan, finish, groups_of, require
from .bootstrap import bootstrap_ci, cluster_bootstrap, percentile_ci
from .correction import correct
from .effects import EFFECTS, no_spread

__all__ = ["TWO_SAMPLE_TESTS", "compare_groups", "two_sample"]


#: Permutations drawn (seeded) for a Mann-Whitney p with ties; when the two groups have at most this many distinct
#: splits, scipy enumerates all of them and the p is exact.
MW_PERMUTATIONS = 9999
#: Below this many observations in the smaller group, tied data get a permutation p: scipy's tie-corrected normal
#: approximation is then too coarse (3 vs 3 separated values with ties: 0.072 against the exact 0.1).
MW_SMALL = 20


def _mannwhitney(a: np.ndarray, b: np.ndarray, alternative: str) -> tuple[float, float, str]:
    """U, its p and how p was computed: ``"exact"`` (no ties, small: scipy's exact U distribution),
    ``"permutation_exact"`` (ties, every split enumerated), ``"permutation_monte_carlo"`` (ties, MW_PERMUTATIONS
    seeded random splits) or ``"asymptotic"`` (large samples: normal approximation with tie correction)."""
    both = np.concatenate([a, b])
    ties = np.unique(both).size < both.size
    small = min(a.size, b.size) < MW_SMALL or math.comb(both.size, a.size) <= MW_PERMUTATIONS
    if ties and small:
        method = stats.PermutationMethod(n_resamples=MW_PERMUTATIONS, rng=np.random.default_rng(0))
        res = stats.mannwhitneyu(a, b, alternative=alternative, method=method)
        exact = math.comb(both.size, a.size) <= MW_PERMUTATIONS
        return float(res.statistic), float(res.pvalue), "permutation_exact" if exact else "permutation_monte_carlo"
    kind = "exact" if small else "asymptotic"
    res = stats.mannwhitneyu(a, b, alternative=alternative, method=kind)
    return float(res.statistic), float(res.pvalue), kind


def _no_variance(a: np.ndarray, b: np.ndarray) -> bool:
    """Both groups constant (up to rounding): a t statistic would be +-inf or ~1e16 and p ~ 0, a lie."""
    sds = np.array([np.std(a, ddof=1), np.std(b, ddof=1)])
    return bool(no_spread(sds, a, b).all()) if min(len(a), len(b)) > 1 else False


def _welch(a: np.ndarray, b: np.ndarray, alternative: str) -> tuple[float, float, str]:
    if _no_variance(a, b):
        return np.nan, np.nan, "undefined"
    res = stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
    return float(res.statistic), float(res.pvalue), "t_distribution"


def _student(a: np.ndarray, b: np.ndarray, alternative: str) -> tuple[float, float, str]:
    if _no_variance(a, b):
        return np.nan, np.nan, "undefined"
    res = stats.ttest_ind(a, b, equal_var=True, alternative=alternative)
    return float(res.statistic), float(res.pvalue), "t_distribution"


#: Two-sample tests by name: ``f(a, b, alternative) -> (statistic, p, p_method)``, and their default effect size.
#: ``p_method`` says how p was computed (``"exact"``, ``"permutation_exact"``, ``"asymptotic"``, ...).
TWO_SAMPLE_TESTS: dict[str, tuple[Callable[..., tuple[float, float, str]], str]] = {
    "mannwhitney": (_mannwhitney, "rank_biserial"),
    "welch_t": (_welch, "hedges_g"),
    "student_t": (_student, "cohen_d"),
}


def compare_groups(scores: pd.DataFrame, group: str = "label", *, value: str = "mass_frac",
                   by: str | Sequence[str] = ("method", "region"), test: str = "mannwhitney",
                   effect: str = "auto", pairs: Sequence[tuple[Any, Any]] | None = None, reference: Any = None,
                   aggregate: str | None = None, bootstrap: str | None = None, n_boot: int = N_BOOT,
                   ci: float = 0.95, seed: int = 0, alternative: str = "two-sided", correction: str = "holm",
                   alpha: float = 0.05) -> pd.DataFrame:
    """Test whether ``value`` differs between groups, in every cell of ``by`` (e.g. method x region).

    Parameters
    ----------
    scores
        Region scores (:func:`xaikit.regions.region_scores`) or any long table.
    group
        Column defining the groups (``"label"``, ``"correct"``, ...). With more than two levels the
        family is every pair ("all pairs", the default), ``reference`` against each other level, or
        the ``pairs`` given.
    value
        Column tested.
    by
        Columns whose every combination is tested separately.
    test
        ``"mannwhitney"`` (default), ``"welch_t"`` or ``"student_t"``.
    effect
        ``"auto"`` (rank-biserial for Mann-Whitney, Hedges' g for Welch, Cohen's d for Student),
        ``"rank_biserial"``, ``"hedges_g"`` or ``"cohen_d"``. Positive: ``group_a`` scores higher.
    pairs
        Explicit ``(group_a, group_b)`` level pairs to compare.
    reference
        A level of ``group`` (e.g. the unaffected class): compare it with each other level, as Sümer
        et al. (2023) compared unaffected faces with each of five syndromes. ``group_a`` is the
        reference in every row.
    aggregate
        ``"patient"``: average each patient's images first (images of one patient are not independent).
    bootstrap
        ``"patient"``: keep images but resample whole patients for the CI, and take p from the
        bootstrap distribution of the effect (two-sided percentile inversion; resolution 1 / n_boot).
    n_boot, ci, seed
        Bootstrap resamples (0: no CI), confidence level and seed.
    correction, alpha
        Multiplicity correction over all rows of this table -- every cell of ``by`` times every
        comparison is one family (see :func:`correct`; concatenate tables and call :func:`correct`
        again for a wider family).

    Returns
    -------
    pandas.DataFrame
        One row per cell and pair, with the tests-table columns plus ``p_method``, ``value``, ``group`` and
        the ``by`` columns. ``p_method`` says how ``p_raw`` was computed: Mann-Whitney gives ``"exact"`` (no
        ties, small groups), ``"permutation_exact"`` / ``"permutation_monte_carlo"`` (ties in small groups: the
        normal approximation scipy uses with ties is too coarse there) or ``"asymptotic"``; t-tests give
        ``"t_distribution"``; ``bootstrap="patient"`` gives ``"patient_bootstrap"``.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"label": [0] * 5 + [1] * 5, "mass_frac": [.1, .2, .15, .12, .18, .5, .6, .55, .7, .65]})
    >>> res = compare_groups(df, by=(), n_boot=0)
    >>> float(res["effect_size"].iloc[0])
    -1.0
    """
    by = as_tuple(by)
    check_resampling("compare_groups", ci=ci, n_boot=n_boot, alternative=alternative, seed=seed)
    fn, effect = _test_and_effect(test, effect, "compare_groups")
    data = _prepare(scores, group, value, by, aggregate, bootstrap)
    levels = _pairs(data[group], pairs, reference)
    rows = []
    for keys, sub in groups_of(data, by):
        for a_level, b_level in levels:
            a, b = (sub.loc[sub[group] == lv] for lv in (a_level, b_level))
            _check_sizes(a, b, keys, by, group, a_level, b_level)
            if bootstrap:
                _check_clusters(a, b, keys, by, group, a_level, b_level)
            row = _one_test(a, b, value, fn, effect, bootstrap, n_boot, ci, seed, alternative)
            row.update(dict(zip(by, keys)), family="compare_groups",
                       test=test + ("+patient_bootstrap" if bootstrap else ""),
                       group_a=str(a_level), group_b=str(b_level), value=value, group=group)
            rows.append(row)
    table = finish(rows)
    if table["p_raw"].isna().all():  # say why here, not in correct() (which the user did not call)
        raise StatsError(f"compare_groups: no test of this table is defined (all p_raw are NaN): {value!r} has no "
                         f"variation within the groups of any cell, where a {test} p-value does not exist. Use "
                         "test='mannwhitney' (defined for such data), or check the scores.")
    return correct(table, correction, alpha)


def two_sample(a: np.ndarray, b: np.ndarray, test: str = "mannwhitney", effect: str = "auto", *,
               n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0, alternative: str = "two-sided") -> dict[str, Any]:
    """One two-sample test on arrays: ``{statistic, p_raw, effect_size, effect_name, ci_low, ci_high, n_a, n_b}``."""
    check_resampling("two_sample", ci=ci, n_boot=n_boot, alternative=alternative, seed=seed)
    fn, effect = _test_and_effect(test, effect, "two_sample")
    frame = lambda x: pd.DataFrame({"v": np.asarray(x, float)})  # noqa: E731
    return _one_test(frame(a), frame(b), "v", fn, effect, None, n_boot, ci, seed, alternative)


def _test_and_effect(test: str, effect: str, where: str) -> tuple[Callable, str]:
    if test not in TWO_SAMPLE_TESTS:
        raise StatsError(f"{where}: unknown test {test!r}; choose one of {sorted(TWO_SAMPLE_TESTS)}.")
    fn, auto_effect = TWO_SAMPLE_TESTS[test]
    effect = auto_effect if effect == "auto" else effect
    if effect not in EFFECTS:
        raise StatsError(f"{where}: unknown effect {effect!r}; choose 'auto' or one of {sorted(EFFECTS)}.")
    return fn, effect


def _prepare(scores: pd.DataFrame, group: str, value: str, by: tuple[str, ...], aggregate: str | None,
             bootstrap: str | None) -> pd.DataFrame:
    need = [group, value, *by] + (["patient_id"] if aggregate or bootstrap else [])
    require(scores, need, "compare_groups")
    if aggregate not in (None, "patient") or bootstrap not in (None, "patient"):
        raise StatsError(f"compare_groups: aggregate and bootstrap accept None or 'patient'; "
                         f"got aggregate={aggregate!r}, bootstrap={bootstrap!r}.")
    if aggregate and bootstrap:
        raise StatsError("compare_groups: use aggregate='patient' or bootstrap='patient', not both.")
    data = drop_nan(scores, [value, group], "compare_groups", label=("region",), value=value)
    if aggregate:
        _warn_shared_patients(data, group)
        return data.groupby([*by, group, "patient_id"], observed=True, sort=True)[value].mean().reset_index()
    if not bootstrap and "patient_id" in data.columns:
        per_cell = data.groupby([*by, "patient_id"], observed=True).size() if by else data.groupby("patient_id").size()
        if (per_cell > 1).any():
            warnings.warn("compare_groups: some patients contribute several images, which are not independent; "
                          "use aggregate='patient' or bootstrap='patient'.", stacklevel=3)
    return data


def _warn_shared_patients(data: pd.DataFrame, group: str) -> None:
    n_groups = data.groupby("patient_id", observed=True)[group].nunique()
    if (n_groups > 1).any():
        warnings.warn(f"compare_groups: {int((n_groups > 1).sum())} patients have images in more than one "
                      f"{group!r} group; their per-group means are not independent.", stacklevel=4)


def _pairs(column: pd.Series, pairs: Sequence[tuple[Any, Any]] | None, reference: Any = None,
           where: str = "compare_groups") -> list[tuple[Any, Any]]:
    """The comparisons of one family: ``pairs`` as given, ``reference`` vs each other level, or all pairs."""
    levels = sorted(column.unique().tolist(), key=str)
    if pairs is not None and reference is not None:
        raise StatsError(f"{where}: pass pairs= or reference=, not both (got pairs={list(pairs)}, "
                         f"reference={reference!r}).")
    if reference is not None:
        if reference not in levels:
            raise StatsError(f"{where}: reference={reference!r} is not a level of the group column; its levels "
                             f"are {levels}.")
        if len(levels) < 2:
            raise StatsError(f"{where}: the group column has only the reference level {levels}; nothing to compare.")
        return [(reference, lv) for lv in levels if lv != reference]
    if pairs is not None:
        unknown = [lv for p in pairs for lv in p if lv not in levels]
        if unknown:
            raise StatsError(f"{where}: pairs name levels {unknown} absent from the data {levels}.")
        return list(pairs)
    if len(levels) < 2:
        raise StatsError(f"{where}: the group column has one level only ({levels}); nothing to compare.")
    return list(itertools.combinations(levels, 2))


def _check_sizes(a: pd.DataFrame, b: pd.DataFrame, keys: tuple, by: tuple[str, ...], group: str,
                 a_level: Any, b_level: Any) -> None:
    if len(a) < 2 or len(b) < 2:
        raise StatsError(f"compare_groups: in cell ({cell_name(keys, by)}) group {group}={a_level} has {len(a)} "
                         f"and {group}={b_level} has {len(b)} observations; each needs at least 2. "
                         f"Filter that cell out or merge groups.")


def _one_test(a: pd.DataFrame, b: pd.DataFrame, value: str, fn: Callable, effect: str, bootstrap: str | None,
              n_boot: int, ci: float, seed: int, alternative: str) -> dict[str, Any]:
    # sorted: the result (bootstrap CI included) does not depend on the order of the rows
    xa, xb = np.sort(a[value].to_numpy(float)), np.sort(b[value].to_numpy(float))
    statistic, p, p_method = fn(xa, xb, alternative)
    if np.isnan(p):
        warnings.warn(f"compare_groups: {value!r} is constant within both groups ({_few(xa)} vs {_few(xb)}); "
                      "a t-test is undefined there, p is NaN. Use test='mannwhitney' for such data.", stacklevel=3)
    eff = EFFECTS[effect]
    size = float(eff(xa, xb))
    if np.isnan(size):
        warnings.warn(f"compare_groups: effect size {effect} is undefined for {value!r} ({_few(xa)} vs "
                      f"{_few(xb)}: no variation within the groups); reported as NaN. rank_biserial is "
                      "defined for such data.", stacklevel=3)
    if bootstrap:
        clusters = [_clusters(a, value), _clusters(b, value)]
        if n_boot:
            reps = cluster_bootstrap(lambda u, v: float(eff(u, v)), clusters, n_boot=n_boot, seed=seed)
            (lo, hi), p = percentile_ci(reps, ci), _bootstrap_p(reps, [len(c) for c in clusters])
        else:
            lo = hi = p = np.nan
        p_method = "patient_bootstrap"
    else:
        lo, hi = bootstrap_ci(eff, (xa, xb), n_boot=n_boot, ci=ci, seed=seed)
    return {"n_a": len(xa), "n_b": len(xb), "statistic": statistic, "p_raw": p, "p_method": p_method,
            "effect_size": size, "effect_name": effect, "ci_low": lo, "ci_high": hi}


def _few(x: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in x[:4]) + (", ...]" if len(x) > 4 else "]")


def _clusters(df: pd.DataFrame, value: str) -> list[np.ndarray]:
    return [np.sort(g[value].to_numpy(float)) for _, g in df.groupby("patient_id", observed=True)]


#: Fewest patients per group for a patient bootstrap: with fewer, resampling patients explores almost
#: no distinct data sets and the percentile p collapses to 0 (2 vs 2 patients gave p = 0, "significant").
MIN_CLUSTERS = 3


def _check_clusters(a: pd.DataFrame, b: pd.DataFrame, keys: tuple, by: tuple[str, ...], group: str,
                    a_level: Any, b_level: Any) -> None:
    n_a, n_b = a["patient_id"].nunique(), b["patient_id"].nunique()
    if min(n_a, n_b) < MIN_CLUSTERS:
        raise StatsError(f"compare_groups: bootstrap='patient' in cell ({cell_name(keys, by)}): {group}={a_level} "
                         f"has {n_a} and {group}={b_level} has {n_b} patients; resampling patients needs at least "
                         f"{MIN_CLUSTERS} per group, with fewer its CI and p are undefined. Use "
                         "aggregate='patient' (an exact test on patient means) or more patients.")


def _bootstrap_p(reps: np.ndarray, n_clusters: Sequence[int]) -> float:
    """Two-sided p of 'effect = 0' by inverting the percentile interval: 2 min(P(rep <= 0), P(rep >= 0)),
    counted as (k + 1) / (B + 1) (Davison & Hinkley 1997, eq. 4.11) and never below the smallest two-sided p an
    exact permutation test on the patient means could reach, 2 / C(n_a + n_b, n_a): a bootstrap of few
    patients must not claim more than the patients can show."""
    reps = reps[np.isfinite(reps)]
    if not reps.size:
        return np.nan
    tail = min(np.sum(reps <= 0), np.sum(reps >= 0))
    floor = 2.0 / math.comb(sum(n_clusters), n_clusters[0])
    return float(min(1.0, max(2 * (tail + 1) / (reps.size + 1), floor)))
