"""Figures of explanation quality: the Adebayo randomization figure, perturbation curves, metric forests, ranks.

Pure functions returning Plotly figures from the tables of :mod:`xaikit.evaluation` (``score_many``,
``summarize``, ``curves``, ``randomized_maps``); no model is run here.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import ArgumentError
from ..evaluation import CONTROLS, METRICS, ROBUSTNESS_THRESHOLDS, controls_compare
from .image import plotly_z
from .saliency import SIGN_MODES, display_map

__all__ = ["randomization_maps", "randomization_curves", "perturbation_curves", "metric_forest", "rank_heatmap",
           "verdict_figures"]

_CONTROL_STYLE = {"random": "dot", "sobel": "dash"}
_CONTROL_COLOR = {"random": "#7f7f7f", "sobel": "#3b3b3b"}


def _family(summary: pd.DataFrame, metric: str) -> str | None:
    """The metric's family: the summary's ``family`` column, else the registry (None for an unknown metric)."""
    if "family" in summary.columns:
        fam = summary.loc[summary["metric"] == metric, "family"].dropna()
        if len(fam):
            return str(fam.iloc[0])
    return METRICS[metric].family if metric in METRICS else None


def _compares_controls(summary: pd.DataFrame, metric: str) -> bool:
    family = _family(summary, metric)
    return family is None or controls_compare(family)


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


def randomization_maps(maps: Mapping[str, np.ndarray], index: int = 0, *, layers: Sequence[str] | None = None,
                       sign: str = "absolute", title: str | None = None, cell: int = 150) -> go.Figure:
    """One image's map after each randomization stage, left to right (Adebayo et al. 2018, Fig. 2).

    ``maps`` is the first value of :func:`xaikit.evaluation.randomized_maps`: ``{"original": N x H x W,
    layer: N x H x W, ...}`` in stage order. Each panel is scaled on its own for display (the sign policy names
    the colour scale).
    """
    names = list(maps) if layers is None else ["original", *layers]
    missing = [n for n in names if n not in maps]
    if missing:
        raise ArgumentError(f"randomization_maps: no maps for stages {missing}; known: {list(maps)}.")
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
    fig.update_layout(title=title or "Maps as the model is randomized from the top layer down",
                      width=max(400, cell * len(names)), height=cell + 110, margin=dict(l=10, r=10, t=70, b=10))
    return fig


def randomization_curves(summary: pd.DataFrame, metric: str = "cascading_randomization",
                         similarity: str = "spearman_abs", *, threshold: float | None = 0.5) -> go.Figure:
    """Mean similarity to the original maps per randomized layer, one line per method, with bootstrap CIs.

    ``summary`` is :func:`xaikit.evaluation.summarize` of a table holding the randomization metric. The
    model-independent controls, the verdict's reference, are drawn in grey (random dotted, sobel dashed); a
    method whose line stays high, like theirs, does not depend on the learned weights. ``threshold`` (the
    ``similarity_threshold`` of :func:`xaikit.evaluation.sanity_verdicts`) is drawn as a red line; ``None`` leaves
    it out.
    """
    sub = _rows(summary, "randomization_curves", metric=metric, similarity=similarity)
    order = sub.drop_duplicates("layer").sort_values("layer_index")["layer"].tolist() if "layer_index" in sub \
        else sub["layer"].drop_duplicates().tolist()
    fig = go.Figure()
    for method, m in sub.groupby("method", sort=False):
        m = m.set_index("layer").reindex(order)
        fig.add_trace(go.Scatter(x=order, y=m["mean"], mode="lines+markers", name=str(method),
                                 line=dict(dash=_CONTROL_STYLE.get(str(method), "solid"),
                                           color=_CONTROL_COLOR.get(str(method))),
                                 error_y=dict(type="data", symmetric=False, array=m["ci_high"] - m["mean"],
                                              arrayminus=m["mean"] - m["ci_low"], thickness=1)))
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    if threshold is not None:
        fig.add_hline(y=threshold, line=dict(color="#d62728", width=1, dash="dash"),
                      annotation_text=f"verdict threshold {threshold:g}", annotation_position="top left")
    fig.update_layout(title=f"{metric.replace('_', ' ')}: {similarity} similarity to the original maps",
                      xaxis_title="randomized down to layer (top first)", yaxis_title=f"{similarity} (mean, 95% CI)",
                      height=420, width=760)
    return fig


def perturbation_curves(curves: pd.DataFrame, kinds: Sequence[str] | None = None, *,
                        require_controls: bool = True) -> go.Figure:
    """Mean target output against the fraction perturbed, per method; one panel per curve kind.

    ``curves`` is :func:`xaikit.evaluation.curves` (which adds the controls). Deletion: a faithful map drops fast
    (low area); insertion: it rises fast (high area). The controls are drawn in grey, dotted (random) and dashed
    (sobel): the random map is the floor that the verdicts ("gradcam beats the random control on deletion")
    compare with, so a figure without it is refused unless ``require_controls=False``.
    """
    if require_controls and "random" not in set(curves["method"].astype(str)):
        raise ArgumentError("perturbation_curves: the table has no curves of the random control, the floor the "
                            "deletion/insertion verdicts compare with; compute them with xaikit.evaluation.curves "
                            "(controls=CONTROLS, its default) or pass require_controls=False.")
    kinds = list(kinds or curves["curve"].drop_duplicates())
    fig = make_subplots(1, len(kinds), subplot_titles=kinds, shared_yaxes=True)
    colors = {}
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
    for j, kind in enumerate(kinds):
        sub = _rows(curves, "perturbation_curves", curve=kind)
        mean = sub.groupby(["method", "fraction"], sort=False)["output"].mean().reset_index()
        for method, m in mean.groupby("method", sort=False):
            color = _CONTROL_COLOR.get(str(method)) or colors.setdefault(method, palette[len(colors) % len(palette)])
            fig.add_trace(go.Scatter(x=m["fraction"], y=m["output"], mode="lines", name=str(method),
                                     legendgroup=str(method), showlegend=j == 0,
                                     line=dict(color=color, dash=_CONTROL_STYLE.get(str(method), "solid"))), 1, j + 1)
        fig.update_xaxes(title_text="fraction of pixels perturbed", row=1, col=j + 1)
    fig.update_yaxes(title_text="target output (mean over images)", row=1, col=1)
    fig.update_layout(height=420, width=max(500, 420 * len(kinds)), title="Perturbation curves")
    return fig


def metric_forest(summary: pd.DataFrame, metric: str, *, layer: str | None = None,
                  similarity: str | None = None, threshold: float | None = None) -> go.Figure:
    """Mean of one metric per method with its bootstrap CI, best method on top; controls in grey.

    Controls are drawn only where the verdicts compare with them (:data:`xaikit.evaluation.CONTROL_ROLES`: the
    floor of faithfulness and localization, the reference of randomization). Robustness is judged against a
    stated threshold instead, drawn as a red line: ``threshold``, default
    :data:`xaikit.evaluation.ROBUSTNESS_THRESHOLDS` of the metric (none for metrics without one).
    """
    sub = _rows(summary, "metric_forest", metric=metric, layer=layer, similarity=similarity)
    if sub["method"].duplicated().any():
        raise ArgumentError(f"metric_forest: {metric!r} has several rows per method (layers/similarities); pass "
                            "layer=... and similarity=....")
    robust = _family(summary, metric) == "robustness"
    if not _compares_controls(summary, metric):
        sub = sub[~sub["method"].isin(CONTROLS)]
    if threshold is None and robust:
        threshold = ROBUSTNESS_THRESHOLDS.get(metric)
    sub = sub.assign(_order=np.where(sub["higher_is_better"], -sub["mean"], sub["mean"]))
    sub = sub.sort_values("_order", ascending=False)
    colors = ["#999999" if m in _CONTROL_STYLE else "#1f77b4" for m in sub["method"]]
    fig = go.Figure(go.Scatter(x=sub["mean"], y=sub["method"].astype(str), mode="markers",
                               marker=dict(size=10, color=colors),
                               error_x=dict(type="data", symmetric=False, array=sub["ci_high"] - sub["mean"],
                                            arrayminus=sub["mean"] - sub["ci_low"])))
    better = "higher" if bool(sub["higher_is_better"].iloc[0]) else "lower"
    judged = ""
    if threshold is not None:
        fig.add_vline(x=threshold, line=dict(color="#d62728", width=1, dash="dash"))
        judged = f"; red: stated threshold {threshold:g}"
    elif robust:
        judged = "; no stated threshold"
    # two lines: the title names what is drawn, the subtitle how it is judged (one line was cut at 700 px)
    fig.update_layout(title=f"{metric.replace('_', ' ')}<br><sup>{better} is better; mean and 95% bootstrap CI{judged}"
                            "</sup>",
                      xaxis_title=metric, height=max(300, 32 * len(sub) + 120), width=700,
                      margin=dict(l=170))
    return fig


def rank_heatmap(summary: pd.DataFrame, *, similarity: str = "spearman_abs") -> go.Figure:
    """Rank of every method on every metric (1 = best); randomization metrics at their last layer.

    Controls are ranked only where the verdicts compare with them (:data:`xaikit.evaluation.CONTROL_ROLES`):
    their cells in robustness and complexity columns are empty (a random map is trivially stable, not the best).
    """
    rows = summary
    if "similarity" in rows.columns:
        rand = rows["similarity"].notna()
        last = rows.loc[rand].groupby("metric")["layer_index"].transform("max")
        keep = ~rand | ((rows["similarity"] == similarity) & (rows["layer_index"] == last.reindex(rows.index)))
        rows = rows[keep.fillna(False).astype(bool)]
    no_role = [m for m in rows["metric"].unique() if not _compares_controls(summary, m)]
    rows = rows.assign(rank=rows["rank"].where(~(rows["method"].isin(CONTROLS) & rows["metric"].isin(no_role))))
    wide = rows.pivot_table(index="method", columns="metric", values="rank", aggfunc="first", dropna=False)
    text = [["" if pd.isna(v) else f"{v:.0f}" for v in row] for row in wide.to_numpy()]  # no rank: an empty cell
    fig = go.Figure(go.Heatmap(z=wide.to_numpy(), x=wide.columns.tolist(), y=wide.index.astype(str).tolist(),
                               colorscale="Viridis_r", text=text, texttemplate="%{text}",
                               colorbar=dict(title="rank")))
    fig.update_layout(title="Rank of each method per metric (1 = best)", height=max(360, 44 * len(wide) + 260),
                      width=max(500, 70 * wide.shape[1] + 220), margin=dict(l=170, b=140, t=90))
    return fig


def verdict_figures(summary: pd.DataFrame, verdicts: pd.DataFrame, curves: pd.DataFrame | None = None, *,
                    similarity: str = "spearman_abs", similarity_threshold: float = 0.5,
                    robustness_thresholds: Mapping[str, float] | None = None) -> dict[str, go.Figure]:
    """One figure per checked metric of :func:`xaikit.evaluation.sanity_verdicts`, so every verdict is visible.

    - deletion / insertion (and other curve kinds in ``curves``, from :func:`xaikit.evaluation.curves`): one
      :func:`perturbation_curves` figure ``"curves"`` with the controls drawn (it needs ``curves``);
    - randomization checks: :func:`randomization_curves` with the model-independent reference maps and the
      verdict's ``similarity_threshold``, named after the metric;
    - every other checked metric: :func:`metric_forest` (the random floor drawn for faithfulness and
      localization; the stated threshold, not the controls, for robustness), named after the metric.

    Pass the same thresholds as to ``sanity_verdicts``. An unknown verdict table raises an error naming its
    missing columns; a curve verdict without ``curves`` raises one asking for them.
    """
    missing = [c for c in ("check", "family") if c not in verdicts.columns]
    if missing:
        raise ArgumentError(f"verdict_figures: verdicts lacks columns {missing}; pass sanity_verdicts' table.")
    checks = verdicts["check"].drop_duplicates().tolist()
    kinds = [] if curves is None else curves["curve"].drop_duplicates().tolist()
    on_curves = [c for c in checks if c in kinds]
    if curves is None and any(c in ("deletion", "insertion", "deletion_lerf") for c in checks):
        raise ArgumentError("verdict_figures: the verdicts judge deletion/insertion; pass curves=xaikit.evaluation."
                            "curves(model, x, explanations, ...) so that the figure can show them with the controls.")
    figures = {"curves": perturbation_curves(curves, on_curves)} if on_curves else {}
    thresholds = {**ROBUSTNESS_THRESHOLDS, **dict(robustness_thresholds or {})}
    for metric in checks:
        family = verdicts.loc[verdicts["check"] == metric, "family"].iloc[0]
        if metric in on_curves:
            continue
        if family == "randomization":
            figures[metric] = randomization_curves(summary, metric, similarity, threshold=similarity_threshold)
        else:
            figures[metric] = metric_forest(summary, metric, threshold=thresholds.get(metric)
                                            if family == "robustness" else None)
    return figures
