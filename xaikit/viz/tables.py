"""Tables for reading: p-values as ``< 1e-4`` rather than ``0.0000``, counts as integers, flags as words.

The tidy tables of the kit keep full precision (and go to CSV that way); :func:`readable` makes a copy for the
screen or a report page. Nothing is dropped or reordered.

Examples
--------
>>> import pandas as pd
>>> readable(pd.DataFrame({"n_a": [12.0, 7.0], "p_adj": [3e-6, 0.1671], "significant": [True, False]}))
  n_a   p_adj significant
0  12  < 1e-4         yes
1   7  0.1671          no
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["format_p", "format_ci", "with_ci", "readable", "P_FLOOR"]

#: p-values below this are shown as ``< 1e-4``: more digits claim a precision that bootstrap and
#: permutation tests do not have, and a rounded ``0.0000`` reads as "impossible".
P_FLOOR = 1e-4

_P_COLUMNS = {"p", "pvalue", "p_value"}
_COUNT_COLUMNS = {"n", "count", "n_images", "n_obs", "n_groups", "n_tests", "n_patients", "images", "patients"}


def format_p(p: float, floor: float = P_FLOOR) -> str:
    """``"< 1e-4"`` below ``floor``, else four decimals; ``"—"`` for NaN."""
    if p is None or not np.isfinite(p):
        return "—"
    return f"< {floor:.0e}".replace("e-0", "e-") if p < floor else f"{p:.4f}"


def format_ci(value: float, low: float, high: float, digits: int = 3) -> str:
    """``"0.812 [0.774, 0.851]"``: an estimate and its interval; the estimate alone when the interval is NaN.

    >>> format_ci(0.8123, 0.7741, 0.8507), format_ci(0.5, float("nan"), float("nan"), digits=2)
    ('0.812 [0.774, 0.851]', '0.50')
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def with_ci(table: pd.DataFrame, value: str = "mean", low: str = "ci_low", high: str = "ci_high",
            digits: int = 3) -> pd.Series:
    """:func:`format_ci` on every row of a table with an estimate column and its interval columns."""
    return pd.Series([format_ci(v, lo, hi, digits) for v, lo, hi in zip(table[value], table[low], table[high])],
                     index=table.index, dtype=object)


def _is_p(name: str) -> bool:
    return name in _P_COLUMNS or name.startswith("p_")


def _is_count(name: str, col: pd.Series) -> bool:
    if not (name in _COUNT_COLUMNS or name.startswith("n_")) or not pd.api.types.is_numeric_dtype(col):
        return False
    values = col.dropna().to_numpy(float)
    return bool(np.all(values == np.round(values)))


def _is_flag(col: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(col):
        return True
    return (col.dtype == object and col.dropna().map(lambda v: isinstance(v, (bool, np.bool_))).all()
            and col.notna().any())


def _column(name: str, col: pd.Series, digits: int) -> pd.Series:
    if _is_p(name) and pd.api.types.is_numeric_dtype(col):
        return col.map(format_p)
    if _is_count(name, col):
        return col.map(lambda v: "—" if pd.isna(v) else str(int(v)))
    if _is_flag(col):
        return col.map(lambda v: "—" if pd.isna(v) else "yes" if v else "no")
    if pd.api.types.is_float_dtype(col):
        return col.round(digits)
    return col


def readable(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A copy of ``table`` for display: ``p_*`` columns via :func:`format_p`, whole-number ``n_*`` counts as
    integers, boolean flags as ``yes``/``no``, other floats rounded to ``digits``."""
    return pd.DataFrame({name: _column(str(name), table[name], digits) for name in table.columns}, index=table.index)
