"""Agreement between the model's region relevance and experts' region scores (Sümer et al. 2023, RQ2)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import StatsError
from ._table import as_tuple, drop_nan, groups_of, require

__all__ = ["alignment", "alignment_summary", "spearman_ci"]


def spearman_ci(rho: float, n: int, ci: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval of Spearman's rho with Bonett & Wright's (2000) variance (1 + rho^2 / 2) / (n - 3)."""
    if n < 4 or not np.isfinite(rho):
        return np.nan, np.nan
    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    half = stats.norm.ppf(0.5 + ci / 2) * np.sqrt((1 + rho**2 / 2) / (n - 3))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def alignment(scores: pd.DataFrame, expert: pd.DataFrame | pd.Series, *, value: str = "mean",
              by: str | Sequence[str] = "method", fold: str | None = None, expert_value: str = "expert_score",
              ci: float = 0.95) -> pd.DataFrame:
    """Spearman's rho between the model's mean relevance per region and the experts' score of the region.

    Parameters
    ----------
    scores
        Region scores; ``value`` is averaged over the images of each region (per ``by`` cell and fold).
    expert
        Experts' region scores: a Series indexed by region, or a DataFrame with ``region`` and
        ``expert_value`` columns (plus ``fold`` if the experts scored each fold).
    fold
        Column of ``scores`` holding the cross-validation fold (one rho per fold).

    Returns
    -------
    pandas.DataFrame
        ``family, test, <by>, fold, n_regions, statistic (rho), p_raw, effect_size (rho), effect_name,
        ci_low, ci_high``. :func:`alignment_summary` gives mean ± SD over folds.
    """
    by = as_tuple(by)
    folds = (fold,) if fold else ()
    require(scores, ["region", value, *by, *folds], "alignment")
    experts = _expert_table(expert, expert_value, fold)
    data = drop_nan(scores, [value], "alignment", label=("region",), value=value)
    per_region = data.groupby([*by, *folds, "region"], observed=True)[value].mean().rename("model").reset_index()
    keys_on = ["region", *([fold] if fold and fold in experts.columns else [])]
    merged = per_region.merge(experts, on=keys_on, how="inner")
    unmatched = sorted(set(per_region["region"]) - set(experts["region"]))
    if merged.empty:
        raise StatsError(f"alignment: no region of the scores has an expert score (scores: "
                         f"{sorted(per_region['region'].unique())}, experts: {sorted(experts['region'].unique())}).")
    rows = [_one(sub, dict(zip((*by, *folds), keys)), ci, expert_value)
            for keys, sub in groups_of(merged, (*by, *folds))]
    out = pd.DataFrame(rows)
    out.attrs["regions_without_expert_score"] = unmatched
    return out


def _expert_table(expert: Any, expert_value: str, fold: str | None) -> pd.DataFrame:
    if isinstance(expert, pd.Series):
        return pd.DataFrame({"region": expert.index.astype(str), expert_value: expert.to_numpy(float)})
    require(expert, ["region", expert_value], "alignment (expert table)")
    return expert


def _one(sub: pd.DataFrame, keys: dict[str, Any], ci: float, expert_value: str) -> dict[str, Any]:
    n = len(sub)
    if n < 3:
        raise StatsError(f"alignment: {keys or 'the data'} has {n} regions with expert scores; Spearman's rho "
                         "needs at least 3.")
    res = stats.spearmanr(sub["model"], sub[expert_value])
    rho = float(res.statistic)
    lo, hi = spearman_ci(rho, n, ci)
    return {"family": "alignment", "test": "spearman", **keys, "n_regions": n, "statistic": rho,
            "p_raw": float(res.pvalue), "effect_size": rho, "effect_name": "spearman_rho", "ci_low": lo, "ci_high": hi}


def alignment_summary(table: pd.DataFrame, by: str | Sequence[str] = "method") -> pd.DataFrame:
    """Mean ± SD (ddof 1) of rho over folds: ``<by>, n_folds, rho_mean, rho_sd``."""
    by = list(as_tuple(by))
    agg = table.groupby(by, observed=True)["statistic"] if by else table["statistic"]
    out = agg.agg(n_folds="count", rho_mean="mean", rho_sd="std")
    return out.reset_index() if by else out.to_frame().T
