"""Region explorer: method/region/value pickers wired to :mod:`xaikit.viz.stats` figures (no computation)."""
from __future__ import annotations

import ipywidgets as w
import pandas as pd
import plotly.graph_objects as go

from ..viz.stats import region_boxplot

__all__ = ["region_explorer"]

_VALUES = ["mass_frac", "density_ratio", "mean", "topk_overlap", "pointing", "max", "sum"]


def region_explorer(scores: pd.DataFrame, tests: pd.DataFrame | None = None, group: str = "label") -> w.VBox:
    """A box/strip plot of region scores with pickers for method, regions and score column."""
    methods = sorted(scores["method"].unique().tolist(), key=str)
    regions = scores["region"].drop_duplicates().tolist()
    method = w.Dropdown(options=methods, value=methods[0], description="method")
    value = w.Dropdown(options=[v for v in _VALUES if v in scores.columns], value="mass_frac", description="score")
    picked = w.SelectMultiple(options=regions, value=tuple(regions), description="regions", rows=min(8, len(regions)))
    fig = go.FigureWidget(region_boxplot(scores, value.value, group, tests, method.value))

    def redraw(_=None) -> None:
        if not picked.value:
            return
        new = region_boxplot(scores, value.value, group, tests, method.value, list(picked.value))
        with fig.batch_update():
            fig.data = []
            fig.add_traces(list(new.data))
            fig.layout = new.layout

    for control in (method, value, picked):
        control.observe(redraw, names="value")
    return w.VBox([w.HBox([method, value]), picked, fig])
