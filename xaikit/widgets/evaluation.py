"""Evaluation explorers: a slider over randomized layers and a dropdown over metrics (wiring only)."""
from __future__ import annotations

from typing import Mapping

import ipywidgets as w
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..viz.evaluation import metric_forest, randomization_maps

__all__ = ["randomization_explorer", "metric_explorer"]


def randomization_explorer(maps: Mapping[str, Mapping[str, np.ndarray]], index: int = 0) -> w.VBox:
    """Pick a method, slide over the randomization stages: the maps from the original down to that layer.

    ``maps`` is ``{method: maps from xaikit.evaluation.randomized_maps}``.
    """
    methods = list(maps)
    method = w.Dropdown(options=methods, value=methods[0], description="method")
    stages = list(maps[methods[0]])
    depth = w.IntSlider(value=len(stages) - 1, min=0, max=len(stages) - 1, description="layers")
    label = w.Label()
    fig = go.FigureWidget(randomization_maps(maps[methods[0]], index, layers=stages[1:]))

    def redraw(_=None) -> None:
        names = list(maps[method.value])
        label.value = f"randomized down to: {names[depth.value]}"
        new = randomization_maps(maps[method.value], index, layers=names[1 : depth.value + 1])
        with fig.batch_update():
            fig.data = []
            fig.add_traces(list(new.data))
            fig.layout = new.layout

    for control in (method, depth):
        control.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([method, depth, label]), fig])


def metric_explorer(summary: pd.DataFrame) -> w.VBox:
    """A dropdown over metrics showing :func:`~xaikit.viz.evaluation.metric_forest` (randomization: last layer)."""
    table = summary
    if "similarity" in table.columns:
        rand = table["similarity"].notna()
        last = table.loc[rand].groupby("metric")["layer_index"].transform("max").reindex(table.index)
        keep = ~rand | ((table["similarity"] == "spearman_abs") & (table["layer_index"] == last))
        table = table[keep.fillna(False).astype(bool)]
    metrics = table["metric"].drop_duplicates().tolist()
    pick = w.Dropdown(options=metrics, value=metrics[0], description="metric")
    fig = go.FigureWidget(metric_forest(table, metrics[0]))

    def redraw(_=None) -> None:
        new = metric_forest(table, pick.value)
        with fig.batch_update():
            fig.data = []
            fig.add_traces(list(new.data))
            fig.layout = new.layout

    pick.observe(redraw, names="value")
    return w.VBox([pick, fig])
