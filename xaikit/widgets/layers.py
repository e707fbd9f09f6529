"""LayerViewer: page through the filters of one layer, image by image; callbacks only redraw.

The activations are computed once (:func:`xaikit.saliency.layer_activations`); the sliders swap the maps of an
existing ``FigureWidget`` built by :func:`xaikit.viz.layers.filter_grid`.
"""
from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go

from ..viz.layers import _plane, filter_grid, filter_page

__all__ = ["LayerViewer"]


class LayerViewer:
    """Image slider, page slider and ordering (filter index or strongest first) over one layer's filters.

    Examples
    --------
    >>> LayerViewer(layer_activations(net, x, "layer3"), page_size=16)  # doctest: +SKIP
    """

    def __init__(self, activations, *, page_size: int = 16, n_cols: int = 8):
        self.activations, self.page_size = activations, page_size
        n_pages = -(-activations.n_filters // page_size)
        self.image = widgets.IntSlider(0, 0, len(activations.acts) - 1, description="image")
        self.page = widgets.IntSlider(0, 0, n_pages - 1, description="page")
        self.order = widgets.ToggleButtons(options=["index", "strongest"], value="index", description="order")
        self.figure = go.FigureWidget(filter_grid(activations, 0, self.filters(), n_cols=n_cols))
        for control in (self.image, self.page, self.order):
            control.observe(self._redraw, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.image, self.page]), self.order, self.figure])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def filters(self) -> list[int]:
        """The filters on the current page, in the current order."""
        i = self.image.value if hasattr(self, "image") else 0
        order = self.activations.strongest(i) if self.order.value == "strongest" else list(
            range(self.activations.n_filters))
        return [order[k] for k in filter_page(self.activations.n_filters, self.page.value, self.page_size)]

    def _redraw(self, change=None) -> None:
        i, filters = self.image.value, self.filters()
        with self.figure.batch_update():
            for k, trace in enumerate(self.figure.data):
                if k < len(filters):
                    trace.z = _plane(self.activations.acts[i, filters[k]])[::-1]
                    trace.visible = True
                else:
                    trace.visible = False
            names = [f"filter {f}" for f in filters] + [""] * (len(self.figure.data) - len(filters))
            for annotation, name in zip(self.figure.layout.annotations, names):
                annotation.text = name
