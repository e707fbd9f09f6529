"""Figures of region statistics: per-region box/strip plots with CIs and significance marks, a method x
region heatmap of effect sizes, and a forest plot of tests. Pure functions returning Plotly figures."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import ArgumentError
from ..stats.summary import describe

__all__ = ["significance_mark", "region_boxplot", "effect_heatmap", "forest_plot"]

_GROUP_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def significance_mark(p_adj: float) -> str:
    """``***`` (p < .001), ``**`` (< .01), ``*`` (< .05), ``ns``; empty for NaN."""
    if p_adj is None or not np.isfinite(p_adj):
        return ""
    return "***" if p_adj < 0.001 else "**" if p_adj < 0.01 else "*" if p_adj < 0.05 else "ns"


def region_boxplot(scores: pd.DataFrame, value: str = "mass_frac", group: str = "label",
                   tests: pd.DataFrame | None = None, method: str | None = None,
                   regions: Sequence[str] | None = None) -> go.Figure:
    """Box + strip plot of ``value`` per region and group, the mean with its 95 % CI, and the adjusted
    significance of ``tests`` (a :func:`~xaikit.stats.compare_groups` table) above each region."""
    data = scores if method is None else scores[scores["method"] == method]
    if regions is not None:
        data = data[data["region"].isin(regions)]
    if data.empty:
        raise ArgumentError(f"region_boxplot: no rows for method={method!r}, regions={regions!r}.")
    missing = data[value].isna()
    data = data[~missing]  # NaN scores (empty regions, flat maps) cannot be drawn; the title says how many
    if data.empty:
        raise ArgumentError(f"region_boxplot: every {value!r} score is NaN (empty regions or maps without "
                            "relevance under the sign policy); see the warnings of region_scores.")
    fig = go.Figure()
    summary = describe(data, value, by=[group, "region"])
    for i, (level, sub) in enumerate(data.groupby(group, sort=True, observed=True)):
        color = _GROUP_COLORS[i % len(_GROUP_COLORS)]
        fig.add_trace(go.Box(x=sub["region"], y=sub[value], name=f"{group}={level}", marker_color=color,
                             boxpoints="all", jitter=0.4, pointpos=0, offsetgroup=str(level), legendgroup=str(level)))
        s = summary[summary[group] == level]
        fig.add_trace(go.Scatter(x=s["region"], y=s["mean"], mode="markers", marker=dict(symbol="diamond", size=9,
                                 color=color, line=dict(color="black", width=1)), name=f"mean ± 95% CI ({level})",
                                 error_y=dict(type="data", symmetric=False, array=s["ci_high"] - s["mean"],
                                              arrayminus=s["mean"] - s["ci_low"]),
                                 offsetgroup=str(level), legendgroup=str(level), showlegend=False))
    if tests is not None:
        _annotate(fig, tests if method is None or "method" not in tests else tests[tests["method"] == method],
                  data[value].max())
    fig.update_layout(boxmode="group", scattermode="group", yaxis_title=value, xaxis_title="region",
                      title=f"{value} by region" + (f" ({method})" if method else "")
                      + (f" · {int(missing.sum())} NaN scores not drawn" if missing.any() else ""))
    return fig


def _annotate(fig: go.Figure, tests: pd.DataFrame, top: float) -> None:
    for _, row in tests.iterrows():
        mark = significance_mark(row["p_adj"])
        if mark:
            fig.add_annotation(x=row["region"], y=top, yshift=18, text=mark, showarrow=False,
                               hovertext=f"p_adj = {row['p_adj']:.3g} ({row['correction']})")


def effect_heatmap(tests: pd.DataFrame, rows: str = "method", cols: str = "region",
                   value: str = "effect_size") -> go.Figure:
    """Method x region heatmap of effect sizes (diverging, centred on 0), significance marks as text."""
    grid = tests.pivot_table(index=rows, columns=cols, values=value, aggfunc="first")
    marks = tests.assign(mark=tests["p_adj"].map(significance_mark)).pivot_table(
        index=rows, columns=cols, values="mark", aggfunc="first").reindex_like(grid).fillna("")
    bound = float(np.nanmax(np.abs(grid.to_numpy()))) if grid.size else 1.0
    text = [[f"{v:.2f} {m}" if np.isfinite(v) else "" for v, m in zip(rv, rm)]
            for rv, rm in zip(grid.to_numpy(float), marks.to_numpy())]
    name = tests["effect_name"].iloc[0] if "effect_name" in tests and len(tests) else value
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(float), x=grid.columns.astype(str), y=grid.index.astype(str),
                               colorscale="RdBu_r", zmid=0, zmin=-bound, zmax=bound, text=text,
                               texttemplate="%{text}", colorbar=dict(title=name)))
    fig.update_layout(title=f"{name} ({rows} x {cols})", xaxis_title=cols, yaxis_title=rows)
    return fig


def _part(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()


def _test_labels(tests: pd.DataFrame, label: Sequence[str]) -> pd.Series:
    """One label per test: the non-empty ``label`` columns joined by " · ", the groups as "a vs b"."""
    if not any(c in tests.columns for c in label):
        return pd.Series(tests.index.astype(str), index=tests.index)
    cols = [c for c in label if c in tests.columns and c not in ("group_a", "group_b")]
    pair = {"group_a", "group_b"} <= set(label) and {"group_a", "group_b"} <= set(tests.columns)
    names = []
    for _, row in tests.iterrows():
        parts = [_part(row[c]) for c in cols]
        if pair:
            a, b = _part(row["group_a"]), _part(row["group_b"])
            parts.append(f"{a} vs {b}" if a and b else a or b)
        names.append(" · ".join(p for p in parts if p))
    return pd.Series(names, index=tests.index)


def forest_plot(tests: pd.DataFrame, label: Sequence[str] = ("method", "region", "group_a", "group_b")) -> go.Figure:
    """Effect size with CI per test; filled markers are significant after correction."""
    names = _test_labels(tests, label)
    sig = (tests["significant"].fillna(False).astype(bool).to_numpy() if "significant" in tests
           else np.zeros(len(tests), bool))
    eff = tests["effect_size"].to_numpy(float)
    fig = go.Figure(go.Scatter(
        x=eff, y=names, mode="markers",
        marker=dict(symbol=np.where(sig, "circle", "circle-open"), size=10, color="#1f77b4"),
        error_x=dict(type="data", symmetric=False, array=tests["ci_high"].to_numpy(float) - eff,
                     arrayminus=eff - tests["ci_low"].to_numpy(float)),
        customdata=np.stack([tests["p_raw"], tests["p_adj"]], axis=1),
        hovertemplate="%{y}<br>effect %{x:.3f}<br>p %{customdata[0]:.3g}, p_adj %{customdata[1]:.3g}<extra></extra>"))
    fig.add_vline(x=0, line_dash="dash", line_color="grey")
    name = tests["effect_name"].iloc[0] if "effect_name" in tests and len(tests) else "effect size"
    fig.update_layout(title="Tests: effect size with CI (filled = significant after correction)", xaxis_title=name,
                      yaxis=dict(autorange="reversed"), height=max(300, 28 * len(tests) + 120))
    return fig
