"""SaliencyExplorer: browse cached saliency maps with sliders; callbacks only redraw.

Every map was computed before (an :class:`~xaikit.saliency.Explanation` per method); moving a slider swaps
arrays in an existing ``FigureWidget`` (display scaling from :func:`xaikit.viz.saliency.display_map`, cached per
image, method and sign mode). ``timings`` keeps the Python time of each callback.
"""
from __future__ import annotations

import time
from typing import Mapping

import ipywidgets as widgets
import plotly.graph_objects as go

from ..viz.image import plotly_z
from ..viz.saliency import SIGN_MODES, alpha_colorscale, display_image, display_map, overlay

__all__ = ["SaliencyExplorer"]


class SaliencyExplorer:
    """Image slider, method dropdown, alpha and threshold sliders, sign mode, over cached maps.

    Parameters
    ----------
    images : tensor N x C x H x W, list of arrays or MedicalImages
    explanations : dict label -> Explanation (same images, same order)

    Examples
    --------
    >>> explorer = SaliencyExplorer(x, {"gradcam": exp})  # doctest: +SKIP
    >>> explorer  # doctest: +SKIP  (displays in Jupyter)
    """

    def __init__(self, images, explanations: Mapping[str, object], *, alpha: float = 0.5,
                 threshold_pct: float = 0.0, sign: str = "signed", clip_pct: float = 99.5):
        self.images, self.explanations, self.clip_pct = images, dict(explanations), clip_pct
        self.timings: list[float] = []
        self._maps: dict[tuple, object] = {}
        self._greys: dict[int, object] = {}
        self._shown = 0
        first = next(iter(self.explanations))
        n = len(self.explanations[first].maps)
        self.image = widgets.IntSlider(0, 0, n - 1, description="image")
        self.method = widgets.Dropdown(options=list(self.explanations), value=first, description="method")
        self.alpha = widgets.FloatSlider(value=alpha, min=0, max=1, step=0.05, description="alpha")
        self.threshold = widgets.FloatSlider(value=threshold_pct, min=0, max=99, step=1, description="threshold %")
        self.sign = widgets.ToggleButtons(options=list(SIGN_MODES), value=sign, description="sign")
        self.figure = go.FigureWidget(overlay(images[0], self.explanations[first].maps[0], alpha=alpha,
                                              threshold_pct=threshold_pct, sign=sign, clip_pct=clip_pct))
        for control in (self.image, self.method, self.threshold, self.sign):
            control.observe(self._redraw, names="value")
        self.alpha.observe(self._set_alpha, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.image, self.method]),
                                    widgets.HBox([self.alpha, self.threshold]), self.sign, self.figure])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _cached_map(self, i: int, label: str, sign: str):
        key = (i, label, sign)
        if key not in self._maps:
            self._maps[key] = display_map(self.explanations[label].maps[i], sign, self.clip_pct)
        return self._maps[key]

    def _grey(self, i: int):
        if i not in self._greys:
            self._greys[i] = display_image(self.images[i])
        return self._greys[i]

    def _redraw(self, change=None) -> None:
        start = time.perf_counter()
        i, sign = self.image.value, self.sign.value
        z = self._cached_map(i, self.method.value, sign)
        if self.threshold.value > 0:
            z = display_map(z, sign, clip_pct=None, threshold_pct=self.threshold.value)  # already scaled
        with self.figure.batch_update():
            if i != self._shown:  # the grey image only changes with the image slider
                self.figure.data[0].z = self._grey(i)
                self._shown = i
            self.figure.data[1].z = plotly_z(z)
            self.figure.data[1].colorscale = alpha_colorscale(sign)  # transparent where the map is zero
            self.figure.data[1].zmin = -1.0 if sign == "signed" else 0.0
        self.timings.append(time.perf_counter() - start)

    def _set_alpha(self, change=None) -> None:
        start = time.perf_counter()
        self.figure.data[1].opacity = self.alpha.value
        self.timings.append(time.perf_counter() - start)
