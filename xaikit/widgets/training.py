"""A live training curve for notebooks: a :func:`~xaikit.train.fit` callback redrawing
:func:`xaikit.viz.training.training_curves` after every epoch.

Example
-------
>>> curve = LiveCurve()
>>> curve                                                  # doctest: +SKIP  (shows the empty figure)
>>> fit(model, train_set, val_set, callbacks=[curve])      # doctest: +SKIP
"""
from __future__ import annotations

import warnings
from typing import Sequence

import pandas as pd
import plotly.graph_objects as go

from ..viz.training import training_curves

__all__ = ["LiveCurve"]

_EMPTY = pd.DataFrame({"epoch": pd.Series(dtype=int), "split": pd.Series(dtype=str),
                       "metric": pd.Series(dtype=str), "value": pd.Series(dtype=float)})


class LiveCurve:
    """Loss and validation-metric curves that grow while :func:`~xaikit.train.fit` runs.

    Pass it in ``fit(..., callbacks=[curve])`` and display it (last expression of a cell, or
    ``display(curve.widget)``). Uses a Plotly ``FigureWidget`` (needs ``anywidget``); without it, an
    ``ipywidgets.Output`` that redraws a static figure each epoch.
    """

    def __init__(self, metrics: Sequence[str] = ("roc_auc", "balanced_accuracy")):
        self.metrics = list(metrics)
        self.rows: list[dict] = []
        figure = training_curves(_EMPTY, self.metrics)
        try:
            self.widget = go.FigureWidget(figure)
            self._output = None
        except ImportError as exc:
            import ipywidgets

            warnings.warn(f"live curve falls back to redrawing a static figure ({exc}); "
                          "`pip install anywidget` for a smoother one", stacklevel=2)
            self._output = self.widget = ipywidgets.Output()

    @property
    def history(self) -> pd.DataFrame:
        """The rows seen so far as a tidy table (``epoch, split, metric, value``)."""
        if not self.rows:
            return _EMPTY.copy()
        long = pd.DataFrame(self.rows).melt(id_vars="epoch", var_name="name", value_name="value")
        split_metric = long["name"].str.split("_", n=1, expand=True)
        return pd.DataFrame({"epoch": long["epoch"], "split": split_metric[0], "metric": split_metric[1],
                             "value": long["value"]})

    def on_epoch_end(self, row: dict) -> None:
        """Callback of :func:`~xaikit.train.fit`: record the epoch's row and redraw."""
        self.rows.append(dict(row))
        figure = training_curves(self.history, self.metrics)
        if self._output is not None:
            from IPython.display import display

            with self._output:
                self._output.clear_output(wait=True)
                display(figure)
            return
        with self.widget.batch_update():
            for trace, new in zip(self.widget.data, figure.data):
                trace.x, trace.y = new.x, new.y

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
