"""Figures of a dataset audit (:func:`xaikit.data.audit`): class balance, effect sizes, feature distributions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import ArgumentError

_CLASS_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")

__all__ = ["audit_figures", "class_balance_bars", "audit_effect_sizes", "feature_boxplots"]


def _features(table: pd.DataFrame, features: pd.DataFrame | None) -> pd.DataFrame:
    """The per-image features behind ``table``: given explicitly, else the ones :func:`xaikit.data.audit`
    attached to it. Figures never read images (viz computes nothing heavy)."""
    if features is not None:
        if not (isinstance(features, pd.DataFrame) and "pixel_hash" in features.columns):
            raise ArgumentError(f"audit_figures: features= must be the table of xaikit.data.image_features; got "
                                f"{type(features).__name__}. Leave it out to use the audit table's own features.")
        return features
    feats = getattr(table, "features", None)
    if not isinstance(feats, pd.DataFrame):
        raise ArgumentError("audit_figures: the table carries no per-image features (it was not made by "
                            "xaikit.data.audit, or an operation such as pd.concat turned it into a plain DataFrame); "
                            "pass the output of xaikit.data.image_features as features=.")
    return feats


def class_balance_bars(features: pd.DataFrame) -> go.Figure:
    """Images per class, one bar group per split."""
    splits = features["split"].replace("", "all")
    counts = features.assign(split=splits).groupby(["split", "label"]).size().rename("n").reset_index()
    fig = go.Figure([go.Bar(name=str(label), x=sub["split"], y=sub["n"], text=sub["n"], textposition="auto")
                     for label, sub in counts.groupby("label")])
    fig.update_layout(barmode="group", title="Images per class and split", xaxis_title="split",
                      yaxis_title="images", legend_title="class", height=360)
    return fig


def audit_effect_sizes(table: pd.DataFrame, min_effect: float = 0.3) -> go.Figure:
    """Effect size of each feature between classes; flagged features in red, the flag threshold dashed."""
    rows = table[(table["check"] == "feature_by_class") & table["effect_size"].notna()]
    colours = np.where(rows["flag"], "#c0392b", "#7f8c8d")
    hover = [f"p_adj={p:.2g}" for p in rows["p_adj"]]
    fig = go.Figure(go.Bar(x=rows["effect_size"], y=rows["feature"], orientation="h", marker_color=colours,
                           hovertext=hover, text=[f"{e:+.2f}" for e in rows["effect_size"]], textposition="auto"))
    for x in (-min_effect, min_effect):
        fig.add_vline(x=x, line_dash="dash", line_color="#34495e")
    name = rows["effect_name"].iloc[0] if len(rows) else "effect size"
    a, b = (rows["group_a"].iloc[0], rows["group_b"].iloc[0]) if len(rows) else ("", "")
    fig.update_layout(title=f"Feature differences between classes ({name}; > 0: {a} higher than {b})",
                      xaxis_title=name, xaxis_range=[-1.05, 1.05] if name == "rank_biserial" else None,
                      height=120 + 32 * len(rows), yaxis_autorange="reversed")
    return fig


def feature_boxplots(features: pd.DataFrame, names: list[str]) -> go.Figure:
    """Box plots (all points shown) of the named features by class, one panel each."""
    if not names:
        raise ArgumentError("feature_boxplots: give at least one feature name.")
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    for col, name in enumerate(names, start=1):
        for k, (label, sub) in enumerate(features.groupby("label")):
            # one colour per class in every panel (Plotly would cycle colours over traces, so panels after the
            # first would not match the legend)
            fig.add_trace(go.Box(y=sub[name], name=str(label), boxpoints="all", jitter=0.4, pointpos=0,
                                 marker_size=3, marker_color=_CLASS_COLORS[k % len(_CLASS_COLORS)],
                                 legendgroup=str(label), showlegend=col == 1), row=1, col=col)
    fig.update_layout(title="Per-image features by class", height=380, width=max(420, 260 * len(names)))
    return fig


def audit_figures(table: pd.DataFrame, *, features: pd.DataFrame | None = None, top: int = 4) -> dict[str, go.Figure]:
    """The audit's figures by name: ``class_balance``, ``effects`` and ``features`` (flagged features, else
    the ``top`` largest effects).

    Parameters
    ----------
    table : pandas.DataFrame
        The output of :func:`xaikit.data.audit` (an ``AuditTable``: its ``features`` are the per-image features).
    features : pandas.DataFrame, optional
        Per-image features (:func:`xaikit.data.image_features`) to draw instead of the table's own; images are
        never re-read.
    top : int
        How many features to plot when none is flagged.
    """
    feats = _features(table, features)
    tested = table[(table["check"] == "feature_by_class") & table["effect_size"].notna()]
    flagged = tested[tested["flag"]]
    chosen = flagged if len(flagged) else tested.reindex(tested["effect_size"].abs().sort_values(ascending=False).index)
    names = chosen["feature"].head(top).tolist()
    figs = {"class_balance": class_balance_bars(feats), "effects": audit_effect_sizes(table)}
    if names:
        figs["features"] = feature_boxplots(feats, names)
    return figs
