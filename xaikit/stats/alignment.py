"""Agreement between the model's region relevance and experts' region scores (Sümer et al. 2023, RQ2),
paired per image and region."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import StatsError
from ._table import as_tuple, cell_name, drop_nan, groups_of, require

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
              image: str = "image_id", ci: float = 0.95) -> pd.DataFrame:
    """Spearman's rho between the model's region relevance and the experts' region scores, per image and region.

    Each row of ``scores`` (one image, one region) is paired with the experts' score of that image and
    region -- never with an average over images, which mixes up which image a score belongs to -- and rho
    is computed over all (image, region) pairs of a ``by`` cell (and fold). Pairs of one image are not
    independent: read p and the CI as descriptive.

    Parameters
    ----------
    scores
        Region scores (one row per image, region and ``by`` cell).
    expert
        Experts' scores: a DataFrame with ``image``, ``region`` and ``expert_value`` columns (per image), or
        with ``region`` and ``expert_value`` only (one score per region, paired with every image's score of
        that region), plus ``fold`` if the experts scored each fold; or a Series indexed by region.
    value
        Column of ``scores`` compared (``mean``: Sümer's c_r).
    by
        Columns of ``scores`` giving one rho each (method, ...).
    fold
        Column of ``scores`` holding the cross-validation fold (one rho per fold).
    image
        Image key column, in ``scores`` and (for per-image experts) in ``expert``.

    Returns
    -------
    pandas.DataFrame
        ``family, test, <by>, fold, n_images, n_regions, n_pairs, statistic (rho), p_raw, effect_size (rho),
        effect_name, ci_low, ci_high``. :func:`alignment_summary` gives mean ± SD over folds.

    Raises
    ------
    StatsError
        When the tables do not join one to one: key columns missing, an expert key given twice, score rows
        without an expert score or expert scores without a score row (counts and examples named).

    Examples
    --------
    >>> import pandas as pd
    >>> scores = pd.DataFrame({"method": "m", "image_id": ["a"] * 3 + ["b"] * 3, "region": list("xyz") * 2,
    ...                        "mean": [1., 2., 3., 10., 20., 30.]})
    >>> expert = scores.rename(columns={"mean": "expert_score"}).drop(columns="method")
    >>> float(alignment(scores, expert)["statistic"].iloc[0])
    1.0
    """
    by = as_tuple(by)
    folds = (fold,) if fold else ()
    experts = _expert_table(expert, expert_value)
    keys = ["region", *([image] if image in experts.columns else []),
            *([fold] if fold and fold in experts.columns else [])]
    require(scores, ["region", value, *by, *folds, *keys], "alignment")
    require(experts, [*keys, expert_value], "alignment (expert table)")
    data = drop_nan(scores, [value], "alignment", label=("region",), value=value)
    experts = drop_nan(experts, [expert_value], "alignment (expert table)", label=("region",), value=expert_value)
    _check_unique(experts, keys, "the expert table")
    if image in keys:
        _check_unique(data, [*by, *folds, *keys], "the scores table")
    _check_join(data, experts, keys, by)
    merged = data.merge(experts[[*keys, expert_value]], on=keys, how="inner", validate="many_to_one")
    return pd.DataFrame([_one(sub, dict(zip((*by, *folds), cell)), ci, value, expert_value, image)
                         for cell, sub in groups_of(merged, (*by, *folds))])


def _expert_table(expert: Any, expert_value: str) -> pd.DataFrame:
    if isinstance(expert, pd.Series):
        index = expert.index.to_frame(index=False)
        if index.shape[1] == 1:
            index.columns = ["region"]
        return index.astype(str).assign(**{expert_value: expert.to_numpy(float)})
    require(expert, [expert_value], "alignment (expert table)")
    return expert


def _keys_text(df: pd.DataFrame, keys: list[str], limit: int = 5) -> str:
    shown = df[keys].astype(str).agg("/".join, axis=1).tolist()
    return ", ".join(shown[:limit]) + (" ..." if len(shown) > limit else "")


def _check_unique(df: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = df.duplicated(keys, keep=False)
    if dup.any():
        raise StatsError(f"alignment: {what} holds {int(dup.sum())} rows that share their {keys} key with another "
                         f"row ({_keys_text(df.loc[dup], keys)}); each key needs exactly one score. Average or "
                         "drop the duplicates first.")


def _check_join(data: pd.DataFrame, experts: pd.DataFrame, keys: list[str], by: tuple[str, ...]) -> None:
    """In every ``by`` cell, every score row has an expert score and every expert score a score row."""
    expert_keys = experts[keys].drop_duplicates()
    for cell, sub in groups_of(data, by):
        both = sub[keys].drop_duplicates().merge(expert_keys, on=keys, how="outer", indicator=True)
        where = f" ({cell_name(cell, by)})" if by else ""
        for side, n_side, what, fix in (
                ("left_only", both["_merge"] != "right_only", "score keys have no expert score",
                 "filter the scores to the experts' images and regions"),
                ("right_only", both["_merge"] != "left_only", "expert keys have no score",
                 "filter the expert table to the scored images and regions")):
            miss = both[both["_merge"] == side]
            if len(miss):
                raise StatsError(f"alignment: the scores{where} and the expert table do not join on {keys}: "
                                 f"{len(miss)} of {int(n_side.sum())} {what} ({_keys_text(miss, keys)}). Check the "
                                 f"key columns' spelling and types, or {fix}.")


def _one(sub: pd.DataFrame, keys: dict[str, Any], ci: float, value: str, expert_value: str,
         image: str) -> dict[str, Any]:
    n = len(sub)
    if n < 3:
        raise StatsError(f"alignment: {keys or 'the data'} has {n} (image, region) pairs with expert scores; "
                         "Spearman's rho needs at least 3.")
    res = stats.spearmanr(sub[value], sub[expert_value])
    rho = float(res.statistic)
    lo, hi = spearman_ci(rho, n, ci)
    n_images = int(sub[image].nunique()) if image in sub.columns else np.nan
    return {"family": "alignment", "test": "spearman", **keys, "n_images": n_images,
            "n_regions": int(sub["region"].nunique()), "n_pairs": n, "statistic": rho, "p_raw": float(res.pvalue),
            "effect_size": rho, "effect_name": "spearman_rho", "ci_low": lo, "ci_high": hi}


def alignment_summary(table: pd.DataFrame, by: str | Sequence[str] = "method") -> pd.DataFrame:
    """Mean ± SD (ddof 1) of rho over folds: ``<by>, n_folds, rho_mean, rho_sd``."""
    by = list(as_tuple(by))
    agg = table.groupby(by, observed=True)["statistic"] if by else table["statistic"]
    out = agg.agg(n_folds="count", rho_mean="mean", rho_sd="std")
    return out.reset_index() if by else out.to_frame().T
