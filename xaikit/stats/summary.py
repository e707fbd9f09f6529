"""Descriptive summaries for figures: mean with a t-interval per cell."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._table import as_tuple, require

__all__ = ["describe"]


def describe(scores: pd.DataFrame, value: str = "mass_frac", by: str | Sequence[str] = ("method", "region"),
             ci: float = 0.95) -> pd.DataFrame:
    """``<by>, n, mean, sd, median, ci_low, ci_high`` of ``value`` (Student-t interval of the mean; NaN excluded)."""
    by = list(as_tuple(by))
    require(scores, [value, *by], "describe")
    grouped = scores.dropna(subset=[value]).groupby(by, observed=True, sort=True)[value]
    out = grouped.agg(n="count", mean="mean", sd="std", median="median").reset_index()
    half = stats.t.ppf(0.5 + ci / 2, np.maximum(out["n"] - 1, 1)) * out["sd"] / np.sqrt(out["n"])
    return out.assign(ci_low=out["mean"] - half, ci_high=out["mean"] + half)
