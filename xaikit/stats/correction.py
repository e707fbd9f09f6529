"""One multiplicity family across everything tested: statsmodels ``multipletests`` in named columns.

The adjustment itself (:func:`xaikit._multiplicity.adjust_pvalues`) lives in a leaf module shared with the dataset
audit; this module is the tidy-table front of it."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from .._multiplicity import CORRECTIONS, adjust_pvalues
from ..errors import StatsError
from ._table import as_tuple, groups_of, require

__all__ = ["CORRECTIONS", "correct"]

def correct(tests: pd.DataFrame, method: str = "holm", alpha: float = 0.05,
            by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Adjust ``p_raw`` over one family of tests and flag the significant ones.

    Parameters
    ----------
    tests
        A tests table (any number of them concatenated: methods x regions x groups is one family).
    method
        ``"holm"`` (family-wise error, any dependence), ``"fdr_bh"`` (false discovery rate),
        ``"bonferroni"``, another :func:`statsmodels.stats.multitest.multipletests` method, or ``"none"``.
    alpha
        Family-wise error (or FDR) level.
    by
        Columns splitting the table into separate families (e.g. ``"method"`` for the Sümer et al. 2023
        protocol, which corrects over each method's tests); default one family.

    Returns
    -------
    pandas.DataFrame
        A copy with ``p_adj``, ``significant`` (``p_adj <= alpha``), ``correction``, ``alpha`` and
        ``family_size`` filled. Rows with a NaN ``p_raw`` stay, with NaN ``p_adj``, outside the family
        (a warning says which).

    Examples
    --------
    >>> import pandas as pd
    >>> correct(pd.DataFrame({"p_raw": [0.01, 0.04, 0.03]}), "holm")["p_adj"].round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    require(tests, ["p_raw"], "correct")
    if method not in CORRECTIONS:
        raise StatsError(f"correct: unknown method {method!r}; choose one of {CORRECTIONS}.")
    if not 0 < alpha < 1:
        raise StatsError(f"correct: alpha must be in (0, 1); got {alpha}.")
    out = tests.copy()
    p = pd.to_numeric(out["p_raw"], errors="coerce").to_numpy(dtype=float)
    text = np.flatnonzero(np.isnan(p) & out["p_raw"].notna().to_numpy())
    if text.size:
        raise StatsError(f"correct: p_raw holds values that are not numbers (rows {text[:6].tolist()}: "
                         f"{out['p_raw'].iloc[text[:6]].tolist()}); a p-value is a probability in [0, 1].")
    _check_range(out, p)
    _warn_nan(out, p)
    if np.isnan(p).all():
        raise StatsError("correct: the family has no test with a p-value (all p_raw are NaN); nothing to correct.")
    p_adj, size = np.full(len(p), np.nan), np.zeros(len(p), dtype=int)
    for _, sub in groups_of(out.assign(_row=np.arange(len(out))), as_tuple(by)):
        rows = sub["_row"].to_numpy()
        rows = rows[~np.isnan(p[rows])]
        if rows.size:
            p_adj[rows] = adjust_pvalues(p[rows], method, alpha)
            size[rows] = rows.size
    out["p_adj"] = p_adj
    out["significant"] = pd.array([None if np.isnan(q) else bool(q <= alpha) for q in p_adj], dtype="boolean")
    out["correction"], out["alpha"], out["family_size"] = method, alpha, size
    return out


def _check_range(tests: pd.DataFrame, p: np.ndarray) -> None:
    """A p-value outside [0, 1] is a bug upstream; adjusting it would flag a negative p as significant."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(p) & ((p < 0) | (p > 1))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise StatsError(f"correct: {bad.sum()} p_raw values lie outside [0, 1] (rows {rows[:6].tolist()}"
                         f"{' ...' if rows.size > 6 else ''}: {p[rows[:6]].tolist()}); a p-value is a probability. "
                         "Fix the test that produced them before correcting.")


def _warn_nan(tests: pd.DataFrame, p: np.ndarray) -> None:
    bad = np.isnan(p)
    if bad.any() and not bad.all():
        cols = [c for c in ("family", "test", "method", "region", "group_a", "group_b") if c in tests.columns]
        shown = tests.loc[bad, cols].astype(str).agg("/".join, axis=1).tolist()[:6]
        warnings.warn(f"correct: {int(bad.sum())} tests have no p-value and are left out of the family "
                      f"(p_adj NaN): {shown}{' ...' if bad.sum() > 6 else ''}.", stacklevel=2)
