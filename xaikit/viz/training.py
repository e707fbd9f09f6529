"""Figures of training and evaluation: history curves, confusion matrix, ROC/PR with bands, reliability.

Pure functions of the tidy tables produced by :mod:`xaikit.train`; each returns a ``plotly.graph_objects.Figure``.

Example
-------
>>> ev = assess(model, test_set)      # doctest: +SKIP
>>> roc_curves(ev.roc, ev.metrics)      # doctest: +SKIP
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .tables import format_ci

__all__ = ["training_curves", "confusion_heatmap", "roc_curves", "pr_curves", "reliability_diagram"]

_COLORS = qualitative.Plotly
_LEGEND_BELOW = {"legend": {"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0},
                 "margin": {"l": 60, "r": 20, "t": 60, "b": 40}}


def training_curves(history: pd.DataFrame, metrics: Sequence[str] | None = None) -> go.Figure:
    """Loss (train and val) on the left, validation metrics on the right, against epoch.

    ``history`` is :attr:`FitResult.history` (``epoch, split, metric, value``). ``metrics`` picks the
    validation metrics to draw (default ``roc_auc``, ``balanced_accuracy`` when recorded).
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "validation metrics"))
    metrics = list(metrics or ("roc_auc", "balanced_accuracy"))
    for i, split in enumerate(("train", "val")):
        rows = history[(history["split"] == split) & (history["metric"] == "loss")]
        fig.add_trace(go.Scatter(x=rows["epoch"], y=rows["value"], mode="lines+markers", name=f"{split} loss",
                                 line={"color": _COLORS[i]}), row=1, col=1)
    for i, metric in enumerate(metrics):
        rows = history[(history["split"] == "val") & (history["metric"] == metric)]
        fig.add_trace(go.Scatter(x=rows["epoch"], y=rows["value"], mode="lines+markers", name=f"val {metric}",
                                 line={"color": _COLORS[(i + 2) % len(_COLORS)]}), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="cross-entropy", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=360, margin={"t": 40, "b": 40})
    return fig


def confusion_heatmap(confusion: pd.DataFrame, classes: Sequence[str], normalize: bool = False) -> go.Figure:
    """Heatmap of :attr:`Assessment.confusion` (rows: true class, columns: predicted), counts in the cells.

    With ``normalize`` the colour is the fraction of each true class (rows sum to 1).
    """
    classes = list(classes)
    value = "fraction" if normalize else "count"
    grid = confusion.pivot(index="true", columns="pred", values=value).reindex(index=classes, columns=classes)
    counts = confusion.pivot(index="true", columns="pred", values="count").reindex(index=classes, columns=classes)
    text = counts.to_numpy().astype(int).astype(str)
    if normalize:
        text = np.char.add(np.char.add(text, "<br>"), np.char.mod("%.0f%%", 100 * grid.to_numpy()))
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=classes, y=classes, text=text, texttemplate="%{text}",
                               colorscale="Blues", zmin=0, zmax=1 if normalize else None,
                               colorbar={"title": value}))
    fig.update_layout(xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      title="confusion matrix", height=380, width=440)
    return fig


def roc_curves(roc: pd.DataFrame, metrics: pd.DataFrame | None = None) -> go.Figure:
    """ROC curve per class with its bootstrap band and the chance diagonal.

    ``roc`` is :attr:`Assessment.roc` (``class, fpr, tpr, tpr_low, tpr_high``); with ``metrics`` the legend
    shows the ROC AUC and its interval (binary tasks).
    """
    fig = _curve_figure(roc, "fpr", "tpr", "roc_auc", metrics)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                             line={"dash": "dash", "color": "grey"}))
    fig.update_layout(xaxis_title="false positive rate (1 - specificity)", yaxis_title="sensitivity",
                      title="ROC curve")
    return fig


def pr_curves(pr: pd.DataFrame, metrics: pd.DataFrame | None = None) -> go.Figure:
    """Precision-recall curve per class with its bootstrap band and the prevalence baseline."""
    fig = _curve_figure(pr, "recall", "precision", "pr_auc", metrics)
    for i, (name, block) in enumerate(pr.groupby("class", sort=False)):
        prevalence = float(block["prevalence"].iloc[0])
        fig.add_trace(go.Scatter(x=[0, 1], y=[prevalence, prevalence], mode="lines", name=f"prevalence {name}",
                                 line={"dash": "dash", "color": _COLORS[i % len(_COLORS)]}, opacity=0.6))
    fig.update_layout(xaxis_title="recall (sensitivity)", yaxis_title="precision", title="precision-recall curve")
    return fig


def reliability_diagram(calibration: pd.DataFrame, metrics: pd.DataFrame | None = None) -> go.Figure:
    """Reliability diagram: observed frequency against mean predicted probability per bin, with the diagonal.

    Marker size follows the number of images in the bin; with ``metrics`` the title shows the ECE.
    """
    size = 6 + 14 * np.sqrt(calibration["count"] / max(calibration["count"].max(), 1))
    fig = go.Figure([
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                   line={"dash": "dash", "color": "grey"}),
        # markers without a connecting line, each labelled with its image count: a bin of one image can only
        # read 0 or 1, and a line through such bins draws a zigzag that looks like a finding
        go.Scatter(x=calibration["mean_predicted"], y=calibration["fraction_positive"], mode="markers+text",
                   name="model (marker size and label: images in the bin)", marker={"size": size},
                   text=[f"n={int(c)}" for c in calibration["count"]], textposition="top center",
                   textfont={"size": 10}, customdata=calibration["count"],
                   hovertemplate="predicted %{x:.2f}<br>observed %{y:.2f}<br>%{customdata} images<extra></extra>"),
    ])
    title = "reliability diagram"
    if metrics is not None and "ece" in set(metrics["metric"]):
        title += f" (ECE {_with_ci(metrics, 'ece')})"
    fig.update_layout(xaxis={"title": "mean predicted probability", "range": [-0.02, 1.02]},
                      yaxis={"title": "observed frequency", "range": [-0.05, 1.1]}, title=title, height=480, width=460,
                      **_LEGEND_BELOW)
    return fig


def _curve_figure(table: pd.DataFrame, x: str, y: str, auc: str, metrics: pd.DataFrame | None) -> go.Figure:
    fig = go.Figure()
    for i, (name, block) in enumerate(table.groupby("class", sort=False)):
        color = _COLORS[i % len(_COLORS)]
        label = f"{name}"
        if metrics is not None and table["class"].nunique() == 1:
            label += f" ({auc.replace('_', ' ').upper()} {_with_ci(metrics, auc)})"
        band_x = np.concatenate([block[x], block[x][::-1]])
        band_y = np.concatenate([block[f"{y}_high"], block[f"{y}_low"][::-1]])
        fig.add_trace(go.Scatter(x=band_x, y=band_y, fill="toself", fillcolor=color, opacity=0.2, mode="lines",
                                 line={"width": 0}, name=f"{name} 95% band", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=block[x], y=block[y], mode="lines", name=label, line={"color": color}))
    # the legend below the square plot: at the side, a long AUC label squeezed the curve to ~120 px
    fig.update_layout(xaxis={"range": [0, 1], "constrain": "domain"},
                      yaxis={"range": [0, 1.02], "scaleanchor": "x", "constrain": "domain"}, height=560, width=480,
                      **_LEGEND_BELOW)
    return fig


def _with_ci(metrics: pd.DataFrame, name: str) -> str:
    row = metrics.set_index("metric").loc[name]
    return format_ci(row["value"], row["ci_low"], row["ci_high"])
