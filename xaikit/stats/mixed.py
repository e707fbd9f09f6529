"""Linear mixed models of region scores (statsmodels MixedLM) as tidy coefficient tables."""
from __future__ import annotations

import re
import warnings
from collections import Counter
from typing import Any

import pandas as pd

from ..errors import StatsError
from ._table import check_resampling, drop_nan, require

__all__ = ["MIXED_COLUMNS", "mixed_model"]

MIXED_COLUMNS = ["family", "test", "term", "estimate", "std_err", "statistic", "p_raw", "ci_low", "ci_high",
                 "n_obs", "n_groups", "groups", "converged"]


def mixed_model(scores: pd.DataFrame, formula: str = "mass_frac ~ C(region) * C(label)", *,
                groups: str | None = None, re_formula: str | None = None, reml: bool = True,
                ci: float = 0.95, **fit_kwargs: Any) -> pd.DataFrame:
    """Fit ``formula`` with a random intercept per ``groups`` and return one row per fixed-effect term.

    ``mass_frac ~ C(region) * C(label)`` with ``groups="patient_id"`` is the lme4 model
    ``mass_frac ~ region * label + (1 | patient)``: every image contributes several regions and a patient
    several images, and the random intercept absorbs what they share.

    Parameters
    ----------
    formula
        Patsy formula of the fixed effects (columns of ``scores``).
    groups
        Column of the random-effect groups; default ``"patient_id"`` if present, else ``"image_id"``.
    re_formula
        Random-effects formula (default: intercept only), e.g. ``"~C(region)"``.
    reml, fit_kwargs
        Passed to :meth:`statsmodels.regression.mixed_linear_model.MixedLM.fit`.

    Returns
    -------
    pandas.DataFrame
        ``family, test, term, estimate, std_err, statistic (z), p_raw, ci_low, ci_high, n_obs, n_groups,
        groups, converged``; ``p_raw`` can go into :func:`xaikit.stats.correct`.
    """
    import statsmodels.formula.api as smf

    require(scores, [], "mixed_model")
    check_resampling("mixed_model", ci=ci)
    groups = groups or ("patient_id" if "patient_id" in scores.columns else "image_id")
    lhs = formula.split("~")[0].strip() if "~" in formula else ""
    if lhs not in scores.columns:
        raise StatsError(f"mixed_model: the left side of {formula!r} must be a column of the table "
                         f"(e.g. 'mass_frac ~ C(region) * C(label)'); columns: {list(scores.columns)}.")
    used = [c for c in dict.fromkeys(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", formula)) if c in scores.columns]
    require(scores, [groups], "mixed_model")
    data = drop_nan(scores, used, "mixed_model", label=("region",))
    if data[groups].nunique() < 2:
        raise StatsError(f"mixed_model: {groups!r} has fewer than 2 groups; a random effect needs several.")
    try:
        model = smf.mixedlm(formula, _plain(data, used), groups=data[groups].astype(str).to_numpy(),
                            re_formula=re_formula)
    except Exception as err:  # the formula engine raises its own error types; re-raised with context
        raise StatsError(f"mixed_model: cannot build the model {formula!r}: {err}") from err
    if data[lhs].nunique() < 2:
        warnings.warn(f"mixed_model: {lhs!r} is constant ({data[lhs].iloc[0]}) in all {len(data)} rows: there is "
                      "no variance to model, so the fit is degenerate (estimates are that constant and 0, p-values "
                      "and CIs undefined); the optimizer's own warnings follow, each once.", stacklevel=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(reml=reml, **fit_kwargs)
        table = _tidy(fit, ci, groups, len(data), data[groups].nunique())
    _reemit(caught)
    return table


def _reemit(caught: list) -> None:
    """statsmodels' and numpy's warnings under our name, each distinct message once with its count (constant data
    gave 219, 200 of them the same slogdet warning): nothing hidden, nothing flooded."""
    counts = Counter(str(w.message) for w in caught)
    for message, n in counts.items():
        warnings.warn(f"mixed_model: {message}" + (f" ({n} times)" if n > 1 else ""), stacklevel=3)


def _plain(data: pd.DataFrame, used: list[str]) -> pd.DataFrame:
    """Nullable pandas dtypes (Int64, boolean) as plain numpy ones, which patsy understands."""
    out = data.copy()
    for c in used:
        if c in out.columns and isinstance(out[c].dtype, pd.api.extensions.ExtensionDtype):
            out[c] = out[c].astype(object if out[c].dtype == "string" else float)
    return out


def _tidy(fit: Any, ci: float, groups: str, n_obs: int, n_groups: int) -> pd.DataFrame:
    names = list(fit.model.exog_names)
    bounds = fit.conf_int(alpha=1 - ci).loc[names]
    return pd.DataFrame({
        "family": "mixed_model", "test": "mixedlm_wald", "term": names,
        "estimate": fit.fe_params.loc[names].to_numpy(), "std_err": fit.bse_fe.loc[names].to_numpy(),
        "statistic": fit.tvalues.loc[names].to_numpy(), "p_raw": fit.pvalues.loc[names].to_numpy(),
        "ci_low": bounds.iloc[:, 0].to_numpy(), "ci_high": bounds.iloc[:, 1].to_numpy(),
        "n_obs": n_obs, "n_groups": int(n_groups), "groups": groups, "converged": bool(fit.converged),
    }, columns=MIXED_COLUMNS).astype({"estimate": float, "p_raw": float})
