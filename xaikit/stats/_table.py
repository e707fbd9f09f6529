"""Shared plumbing of the stats tables: the column contract, input checks and NaN exclusion."""
from __future__ import annotations

import warnings
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import StatsError

TEST_COLUMNS = ["family", "test", "method", "region", "group_a", "group_b", "n_a", "n_b", "statistic", "p_raw",
                "p_adj", "correction", "effect_size", "effect_name", "ci_low", "ci_high", "significant"]


def as_tuple(by: str | Sequence[str] | None) -> tuple[str, ...]:
    """Column names as a tuple (``None`` -> empty)."""
    if by is None:
        return ()
    return (by,) if isinstance(by, str) else tuple(by)


ALTERNATIVES = ("two-sided", "less", "greater")


def check_resampling(where: str, *, ci: Any = 0.95, n_boot: Any = 0, alternative: Any = "two-sided",
                     seed: Any = 0) -> None:
    """Refuse a confidence level outside (0, 1), a negative or non-integer ``n_boot``, an unknown ``alternative``
    or a non-integer ``seed`` before scipy/numpy see them (ci=1.5 gave NaN CIs, n_boot=-5 and
    alternative='bigger' raw scipy errors)."""
    if isinstance(ci, bool) or not isinstance(ci, (int, float, np.floating)) or not 0 < float(ci) < 1:
        raise StatsError(f"{where}: ci={ci!r} must be a confidence level strictly between 0 and 1 (e.g. 0.95).")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise StatsError(f"{where}: n_boot={n_boot!r} must be a whole number >= 0 of bootstrap resamples "
                         "(0: no bootstrap CI; 2000 is usual).")
    if alternative not in ALTERNATIVES:
        raise StatsError(f"{where}: alternative={alternative!r} is not one of {list(ALTERNATIVES)} "
                         "('greater': group_a scores higher).")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise StatsError(f"{where}: seed={seed!r} must be an integer.")


def require(df: Any, columns: Iterable[str], where: str) -> pd.DataFrame:
    """Check ``df`` is a DataFrame holding ``columns``; raise a StatsError naming what is missing."""
    if not isinstance(df, pd.DataFrame):
        raise StatsError(f"{where} needs a pandas DataFrame (e.g. from region_scores); got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise StatsError(f"{where}: the table has no column(s) {missing}; it has {list(df.columns)}.")
    if df.empty:
        raise StatsError(f"{where}: the table is empty; nothing to test.")
    return df


def numeric(df: pd.DataFrame, column: str, where: str) -> pd.DataFrame:
    """``df`` with ``column`` as float; a StatsError naming the column when some cell is not a number."""
    values = pd.to_numeric(df[column], errors="coerce")
    text = values.isna() & df[column].notna()
    if text.any():
        raise StatsError(f"{where}: column {column!r} holds values that are not numbers "
                         f"({df.loc[text, column].astype(str).unique()[:5].tolist()}); convert or drop them first.")
    values = values.astype(float)
    return df.assign(**{column: values.where(~np.isinf(values))})  # +-inf is no score: excluded like NaN


def drop_nan(df: pd.DataFrame, columns: Sequence[str], where: str, label: Sequence[str] = (),
             value: str | None = None) -> pd.DataFrame:
    """Rows with NaN in ``columns`` removed, with a warning saying how many and which; ``value`` is first
    checked to be numeric (:func:`numeric`)."""
    if value is not None:
        df = numeric(df, value, where)
    bad = df[list(columns)].isna().any(axis=1).to_numpy()
    if bad.any():
        keys = [c for c in ("image_id", *label) if c in df.columns]
        shown = df.loc[bad, keys].astype(str).agg("/".join, axis=1).tolist() if keys else []
        more = f" ({', '.join(shown[:8])}{' ...' if len(shown) > 8 else ''})" if shown else ""
        warnings.warn(f"{where}: excluded {int(bad.sum())} of {len(df)} rows with NaN (or infinite) in "
                      f"{list(columns)}{more}.",
                      stacklevel=3)
    if bad.all():  # else the next message would be about levels or sizes of an empty table ("one level only ([])")
        raise StatsError(f"{where}: all {len(df)} rows have NaN (or infinite) values in {list(columns)}; nothing is "
                         "left to test. Check how the scores were computed (e.g. an empty region or a map of NaN).")
    return df.loc[~bad]


def cell_name(keys: tuple, by: Sequence[str]) -> str:
    """``"method=gradient, region=left_lung"`` for messages."""
    return ", ".join(f"{b}={k}" for b, k in zip(by, keys)) or "all rows"


def finish(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A tests table with the contract columns first (missing ones filled), then any others."""
    df = pd.DataFrame(rows)
    for col in TEST_COLUMNS:
        if col not in df.columns:
            df[col] = "" if col in ("method", "region", "group_a", "group_b", "correction") else np.nan
    return df[TEST_COLUMNS + [c for c in df.columns if c not in TEST_COLUMNS]]


def groups_of(df: pd.DataFrame, by: Sequence[str]) -> Iterable[tuple[tuple, pd.DataFrame]]:
    """``(keys, sub-frame)`` per cell of ``by`` (one cell of everything when ``by`` is empty)."""
    if not by:
        yield (), df
        return
    for keys, sub in df.groupby(list(by), sort=True, observed=True):
        yield (keys if isinstance(keys, tuple) else (keys,)), sub
