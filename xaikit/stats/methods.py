"""Paired comparisons on the same images: methods (or regions) compared with Friedman and Wilcoxon."""
from __future__ import annotations

import itertools
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .._resampling import N_BOOT
from ..errors import StatsError
from ._table import as_tuple, cell_name, check_resampling, drop_nan, finish, groups_of, require
from .bootstrap import bootstrap_ci, percentile_ci
from .correction import correct
from .effects import kendall_w, paired_rank_biserial

__all__ = ["compare_paired", "compare_methods", "compare_regions"]


def compare_paired(scores: pd.DataFrame, within: str, *, by: str | Sequence[str] = (), subject: str = "image_id",
                   value: str = "mass_frac", posthoc: bool = True, n_boot: int = N_BOOT, ci: float = 0.95,
                   seed: int = 0, correction: str = "holm", alpha: float = 0.05) -> pd.DataFrame:
    """Compare the levels of ``within`` measured on the same subjects, in every cell of ``by``.

    With three or more levels: Friedman's test, effect Kendall's W (bootstrap CI over subjects), then
    pairwise Wilcoxon signed-rank post-hoc tests (effect: matched-pairs rank-biserial, positive when
    ``group_a`` is higher). With two levels: the Wilcoxon test alone. Subjects missing a level are
    dropped from that cell with a warning. All rows form one family for ``correction``.

    Parameters
    ----------
    within
        Column of the repeated conditions (``"method"`` or ``"region"``).
    by
        Columns whose cells are tested separately (``"region"`` when comparing methods).
    subject
        Column identifying the unit measured under every condition (``"image_id"``; ``"patient_id"``
        after averaging per patient).
    """
    by = as_tuple(by)
    check_resampling("compare_paired", ci=ci, n_boot=n_boot, seed=seed)
    require(scores, [within, subject, value, *by], "compare_paired")
    data = drop_nan(scores, [value], "compare_paired", label=(within,), value=value)
    rows = []
    for keys, sub in groups_of(data, by):
        wide = _wide(sub, within, subject, value, keys, by)
        base = {**dict(zip(by, keys)), "value": value, "within": within}
        if wide.shape[1] >= 3:
            rows.append({**base, **_friedman(wide, n_boot, ci, seed)})
        if posthoc or wide.shape[1] == 2:
            for a, b in itertools.combinations(wide.columns, 2):
                rows.append({**base, **_wilcoxon(wide[a].to_numpy(), wide[b].to_numpy(), a, b, n_boot, ci, seed)})
    return correct(finish(rows), correction, alpha)


def compare_methods(scores: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """Methods compared on the same images, per region: ``compare_paired(scores, "method", by="region")``."""
    kwargs.setdefault("by", "region")
    return compare_paired(scores, "method", **kwargs)


def compare_regions(scores: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """Regions compared within the same images, per method: ``compare_paired(scores, "region", by="method")``."""
    kwargs.setdefault("by", "method")
    return compare_paired(scores, "region", **kwargs)


def _wide(sub: pd.DataFrame, within: str, subject: str, value: str, keys: tuple, by: tuple[str, ...]) -> pd.DataFrame:
    dup = sub.duplicated([subject, within])
    if dup.any():
        raise StatsError(f"compare_paired: in cell ({cell_name(keys, by)}) {int(dup.sum())} {subject}/{within} pairs "
                         f"occur more than once; aggregate them first (e.g. average per {subject}).")
    wide = sub.pivot(index=subject, columns=within, values=value)
    incomplete = wide.isna().any(axis=1)
    if incomplete.any():
        warnings.warn(f"compare_paired: cell ({cell_name(keys, by)}): {int(incomplete.sum())} subjects lack some "
                      f"{within} level and were dropped (e.g. {wide.index[incomplete][:5].tolist()}).", stacklevel=3)
        wide = wide.loc[~incomplete]
    if wide.shape[1] < 2:
        raise StatsError(f"compare_paired: cell ({cell_name(keys, by)}) has a single {within} level "
                         f"{wide.columns.tolist()}; nothing to compare.")
    if len(wide) < 2:
        raise StatsError(f"compare_paired: cell ({cell_name(keys, by)}) has {len(wide)} complete subjects; "
                         "at least 2 are needed.")
    return wide.sort_index(axis=1, key=lambda c: c.astype(str))


def _friedman(wide: pd.DataFrame, n_boot: int, ci: float, seed: int) -> dict[str, Any]:
    x = wide.to_numpy(float)
    n, k = x.shape
    res = stats.friedmanchisquare(*x.T)
    lo, hi = percentile_ci(_w_replicates(x, n_boot, seed), ci) if n_boot else (np.nan, np.nan)
    return {"family": "compare_paired", "test": "friedman", "group_a": "all", "group_b": "", "n_a": n, "n_b": n,
            "statistic": float(res.statistic), "p_raw": float(res.pvalue),
            "effect_size": kendall_w(res.statistic, n, k), "effect_name": "kendall_w", "ci_low": lo, "ci_high": hi}


def _w_replicates(x: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Kendall's W of subjects resampled with replacement (scipy's Friedman statistic, tie-corrected)."""
    rng = np.random.default_rng(seed)
    n, k = x.shape
    out = np.empty(n_boot)
    with np.errstate(divide="ignore", invalid="ignore"):
        for b in range(n_boot):
            xb = x[rng.integers(0, n, n)]
            out[b] = kendall_w(stats.friedmanchisquare(*xb.T).statistic, n, k)
    return out


def _wilcoxon(a: np.ndarray, b: np.ndarray, name_a: Any, name_b: Any, n_boot: int, ci: float,
              seed: int) -> dict[str, Any]:
    d = a - b
    stat, p = (np.nan, np.nan) if np.all(d == 0) else tuple(float(v) for v in stats.wilcoxon(a, b))
    lo, hi = bootstrap_ci(paired_rank_biserial, (d,), n_boot=n_boot, ci=ci, seed=seed)
    return {"family": "compare_paired", "test": "wilcoxon", "group_a": str(name_a), "group_b": str(name_b),
            "n_a": len(a), "n_b": len(b), "statistic": stat, "p_raw": p,
            "effect_size": float(paired_rank_biserial(d)), "effect_name": "rank_biserial", "ci_low": lo, "ci_high": hi}
