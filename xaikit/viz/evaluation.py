"""Figures of explanation quality: the Adebayo randomisation figure, perturbation curves, metric forests, ranks.

Pure functions returning Plotly figures from the tables of :mod:`xaikit.evaluation` (``score_many``,
``summarise``, ``curves``, ``randomised_maps``); no model is run here.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import ArgumentError
from .image import plotly_z
from .saliency import SIGN_MODES, display_map

__all__ = ["randomisation_maps", "randomisation_curves", "perturbation_curves", "metric_forest", "rank_heatmap"]

_CONTROL_STYLE = {"random": "dot", "sobel": "dash"}


def _rows(table: pd.DataFrame, who: str, **where) -> pd.DataFrame:
    sub = table
    for col, val in where.items():
        if val is not None:
            if col not in sub.columns:
                raise ArgumentError(f"{who}: the table has no column {col!r}.")
            sub = sub[sub[col] == val]
    if sub.empty:
        raise ArgumentError(f"{who}: no rows for {where}; check the names against the table.")
    return sub


def randomisation_maps(maps: Mapping[str, np.ndarray], index: int = 0, *, layers: Sequence[str] | None = None,
                       sign: str = "absolute", title: str | None = None, cell: int = 150) -> go.Figure:
    """One image's map after each randomisation stage, left to right (Adebayo et al. 2018, Fig. 2).

    ``maps`` is the first value of :func:`xaikit.evaluation.randomised_maps`: ``{"original": N x H x W,
    layer: N x H x W, ...}`` in stage order. Each panel is scaled on its own for display (the sign policy names
    the colour scale).
    """
    names = list(maps) if layers is None else ["original", *layers]
    missing = [n for n in names if n not in maps]
    if missing:
        raise ArgumentError(f"randomisation_maps: no maps for stages {missing}; known: {list(maps)}.")
    fig = make_subplots(1, len(names), subplot_titles=[n if len(n) < 18 else "…" + n[-16:] for n in names],
                        horizontal_spacing=0.01)
    lo = -1.0 if sign == "signed" else 0.0
    for j, name in enumerate(names):
        z = display_map(np.asarray(maps[name])[index], sign)
        fig.add_trace(go.Heatmap(z=plotly_z(z), colorscale=SIGN_MODES[sign], zmin=lo, zmax=1, showscale=j == 0,
                                 name=name), 1, j + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x")
    fig.update_xaxes(showticklabels=False, constrain="domain")
    for j in range(2, len(names) + 1):
        fig.update_yaxes(scaleanchor=f"x{j}", row=1, col=j)
    fig.update_layout(title=title or "Maps as the model is randomised from the top layer down",
                      width=max(400, cell * len(names)), height=cell + 110, margin=dict(l=10, r=10, t=70, b=10))
    return fig


def randomisation_curves(summary: pd.DataFrame, metric: str = "cascading_randomisation",
                         similarity: str = "spearman_abs") -> go.Figure:
    """Mean similarity to the original maps per randomised layer, one line per method, with bootstrap CIs.

    ``summary`` is :func:`xaikit.evaluation.summarise` of a table holding the randomisation metric. Controls are
    dashed; a method whose line stays high does not depend on the learned weights.
    """
    sub = _rows(summary, "randomisation_curves", metric=metric, similarity=similarity)
    order = sub.drop_duplicates("layer").sort_values("layer_index")["layer"].tolist() if "layer_index" in sub \
        else sub["layer"].drop_duplicates().tolist()
    fig = go.Figure()
    for method, m in sub.groupby("method", sort=False):
        m = m.set_index("layer").reindex(order)
        fig.add_trace(go.Scatter(x=order, y=m["mean"], mode="lines+markers", name=str(method),
                                 line=dict(dash=_CONTROL_STYLE.get(str(method), "solid")),
                                 error_y=dict(type="data", symmetric=False, array=m["ci_high"] - m["mean"],
                                              arrayminus=m["mean"] - m["ci_low"], thickness=1)))
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_layout(title=f"{metric.replace('_', ' ')}: {similarity} similarity to the original maps",
                      xaxis_title="randomised down to layer (top first)", yaxis_title=f"{similarity} (mean, 95% CI)",
                      height=420, width=760)
    return fig


def perturbation_curves(curves: pd.DataFrame, kinds: Sequence[str] | None = None) -> go.Figure:
    """Mean target output against the fraction perturbed, per method; one panel per curve kind.

    ``curves`` is :func:`xaikit.evaluation.curves`. Deletion: a faithful map drops fast (low area); insertion:
    it rises fast (high area).
    """
    kinds = list(kinds or curves["curve"].drop_duplicates())
    fig = make_subplots(1, len(kinds), subplot_titles=kinds, shared_yaxes=True)
    colors = {}
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
    for j, kind in enumerate(kinds):
        sub = _rows(curves, "perturbation_curves", curve=kind)
        mean = sub.groupby(["method", "fraction"], sort=False)["output"].mean().reset_index()
        for method, m in mean.groupby("method", sort=False):
            color = colors.setdefault(method, palette[len(colors) % len(palette)])
            fig.add_trace(go.Scatter(x=m["fraction"], y=m["output"], mode="lines", name=str(method),
                                     legendgroup=str(method), showlegend=j == 0,
                                     line=dict(color=color, dash=_CONTROL_STYLE.get(str(method), "solid"))), 1, j + 1)
        fig.update_xaxes(title_text="fraction of pixels perturbed", row=1, col=j + 1)
    fig.update_yaxes(title_text="target output (mean over images)", row=1, col=1)
    fig.update_layout(height=420, width=max(500, 420 * len(kinds)), title="Perturbation curves")
    return fig


def metric_forest(summary: pd.DataFrame, metric: str, *, layer: str | None = None,
                  similarity: str | None = None) -> go.Figure:
    """Mean of one metric per method with its bootstrap CI, best method on top; controls in grey."""
    sub = _rows(summary, "metric_forest", metric=metric, layer=layer, similarity=similarity)
    if sub["method"].duplicated().any():
        raise ArgumentError(f"metric_forest: {metric!r} has several rows per method (layers/similarities); pass "
                            "layer=... and similarity=....")
    sub = sub.sort_values("rank", ascending=False)
    colors = ["#999999" if m in _CONTROL_STYLE else "#1f77b4" for m in sub["method"]]
    fig = go.Figure(go.Scatter(x=sub["mean"], y=sub["method"].astype(str), mode="markers",
                               marker=dict(size=10, color=colors),
                               error_x=dict(type="data", symmetric=False, array=sub["ci_high"] - sub["mean"],
                                            arrayminus=sub["mean"] - sub["ci_low"])))
    better = "higher" if bool(sub["higher_is_better"].iloc[0]) else "lower"
    fig.update_layout(title=f"{metric.replace('_', ' ')} ({better} is better; mean and 95% bootstrap CI)",
                      xaxis_title=metric, height=max(300, 32 * len(sub) + 120), width=700,
                      margin=dict(l=170))
    return fig


def rank_heatmap(summary: pd.DataFrame, *, similarity: str = "spearman_abs") -> go.Figure:
    """Rank of every method on every metric (1 = best); randomisation metrics at their last layer."""
    rows = summary
    if "similarity" in rows.columns:
        rand = rows["similarity"].notna()
        last = rows.loc[rand].groupby("metric")["layer_index"].transform("max")
        keep = ~rand | ((rows["similarity"] == similarity) & (rows["layer_index"] == last.reindex(rows.index)))
        rows = rows[keep.fillna(False).astype(bool)]
    wide = rows.pivot_table(index="method", columns="metric", values="rank", aggfunc="first")
    fig = go.Figure(go.Heatmap(z=wide.to_numpy(), x=wide.columns.tolist(), y=wide.index.astype(str).tolist(),
                               colorscale="Viridis_r", text=wide.to_numpy(), texttemplate="%{text:.0f}",
                               colorbar=dict(title="rank")))
    fig.update_layout(title="Rank of each method per metric (1 = best)", height=max(360, 44 * len(wide) + 260),
                      width=max(500, 70 * wide.shape[1] + 220), margin=dict(l=170, b=140, t=90))
    return fig
