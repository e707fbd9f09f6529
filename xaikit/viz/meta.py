"""Figures of the meta-evaluation (:mod:`xaikit.evaluation.meta`): the ground-truth ranking and metric reliability."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import ArgumentError

__all__ = ["truth_ranking", "reliability_forest"]


def _need(table: pd.DataFrame, columns: set[str], who: str) -> None:
    missing = columns - set(table.columns)
    if missing:
        raise ArgumentError(f"{who}: the table lacks columns {sorted(missing)}; pass the table of the matching "
                            "xaikit.evaluation function.")


def truth_ranking(table: pd.DataFrame) -> go.Figure:
    """Each method's recovery of the known evidence (AUROC of |map|) with its CI, one panel per world.

    ``table`` is :func:`xaikit.evaluation.ground_truth_ranking`; methods are sorted by their mean over worlds,
    the chance level (0.5) is dashed.
    """
    _need(table, {"world", "method", "truth_auroc", "ci_low", "ci_high"}, "truth_ranking")
    worlds = list(dict.fromkeys(table["world"]))
    order = table.groupby("method")["truth_auroc"].mean().sort_values().index.tolist()
    fig = make_subplots(1, len(worlds), subplot_titles=worlds, shared_yaxes=True, horizontal_spacing=0.02)
    for j, world in enumerate(worlds):
        sub = table[table["world"] == world].set_index("method").reindex(order).dropna(subset=["truth_auroc"])
        fig.add_trace(go.Scatter(x=sub["truth_auroc"], y=sub.index, mode="markers", name=world, showlegend=False,
                                 error_x=dict(type="data", symmetric=False, array=sub["ci_high"] - sub["truth_auroc"],
                                              arrayminus=sub["truth_auroc"] - sub["ci_low"])), 1, j + 1)
        fig.add_vline(x=0.5, line_dash="dash", line_color="grey", row=1, col=j + 1)
    fig.update_xaxes(title_text="AUROC of |map| vs evidence")
    fig.update_layout(title="Ground truth: how well each method's map finds the evidence the model uses (95% CI)",
                      height=120 + 28 * len(order), width=max(500, 260 * len(worlds)), margin=dict(l=10, r=10))
    return fig


def reliability_forest(table: pd.DataFrame) -> go.Figure:
    """Each metric's agreement with the ground-truth ranking (Kendall tau, 95% CI), coloured by family.

    ``table`` is :func:`xaikit.evaluation.metric_reliability`; tau = 0 (no agreement) is dashed.
    """
    _need(table, {"metric", "family", "tau", "ci_low", "ci_high", "n_worlds"}, "reliability_forest")
    sub = table.sort_values("tau")
    fig = go.Figure()
    for family, part in sub.groupby("family", sort=False):
        fig.add_trace(go.Scatter(
            x=part["tau"], y=part["metric"], mode="markers", name=family,
            error_x=dict(type="data", symmetric=False, array=part["ci_high"] - part["tau"],
                         arrayminus=part["tau"] - part["ci_low"]),
            customdata=part["n_worlds"], hovertemplate="%{y}: tau %{x:.2f} on %{customdata} worlds"))
    fig.add_vline(x=0, line_dash="dash", line_color="grey")
    fig.update_yaxes(categoryorder="array", categoryarray=sub["metric"].tolist())
    fig.update_layout(title="Which metric ranks methods as the ground truth does? (Kendall tau, 95% CI)",
                      xaxis_title="Kendall tau with the ground-truth ranking", xaxis_range=[-1.05, 1.05],
                      height=140 + 24 * len(sub), width=760, margin=dict(l=10, r=10))
    return fig
