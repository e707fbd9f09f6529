"""Figures for segmentation and box explanations: image, signed map, mask outlines and boxes in one view.

Example
-------
>>> import numpy as np
>>> fig = mask_box_overlay(np.random.rand(32, 32), np.random.randn(32, 32),
...                        masks={"heart": np.eye(32, dtype=bool)}, boxes={"heart box": (4, 4, 20, 20)})
>>> [t.name for t in fig.data]
['image', 'saliency', 'heart', 'heart box']
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ..errors import ArgumentError
from .image import mask_traces
from .saliency import _square, overlay_traces

__all__ = ["mask_box_overlay", "box_trace"]

_BOX_COLORS = ("#00e5ff", "#ffd600", "#76ff03", "#ff4081")


def box_trace(box: Sequence[float], name: str, color: str = _BOX_COLORS[0]) -> go.Scatter:
    """A rectangle ``(x0, y0, x1, y1)`` (pixels, end exclusive) as a line trace (toggled from the legend)."""
    if len(box) != 4:
        raise ArgumentError(f"box {name!r} must be (x0, y0, x1, y1); got {box!r}.")
    x0, y0, x1, y1 = (float(v) - 0.5 for v in box)
    return go.Scatter(x=[x0, x1, x1, x0, x0], y=[y0, y0, y1, y1, y0], mode="lines", name=name,
                      line={"color": color, "width": 2}, hoverinfo="name")


def mask_box_overlay(image, saliency_map, *, masks: Mapping[str, np.ndarray] | None = None,
                     boxes: Mapping[str, Sequence[float]] | None = None, alpha: float = 0.5, sign: str = "signed",
                     mask_opacity: float = 0.25, title: str | None = None) -> go.Figure:
    """The saliency overlay of :func:`~xaikit.viz.saliency.overlay` plus translucent masks and box outlines.

    Parameters
    ----------
    image, saliency_map : array H x W
        Grey image and signed map (normalized for display only).
    masks : dict of name -> bool H x W, optional
        E.g. the explained (predicted) mask and a ground-truth region.
    boxes : dict of name -> (x0, y0, x1, y1), optional
        Pixel boxes, e.g. a predicted and a true heart box.
    alpha, sign, mask_opacity, title
        Map opacity, sign mode (``"signed"``, ``"positive"``, ``"absolute"``), mask opacity, title.
    """
    fig = go.Figure(overlay_traces(image, saliency_map, alpha=alpha, sign=sign))
    shape = np.asarray(fig.data[0].z).shape
    for name, mask in (masks or {}).items():
        if np.asarray(mask).shape != shape:
            raise ArgumentError(f"mask {name!r} has shape {np.asarray(mask).shape}; the image is {shape}.")
    fig.add_traces(mask_traces(masks, opacity=mask_opacity))
    for i, (name, box) in enumerate((boxes or {}).items()):
        fig.add_trace(box_trace(box, name, _BOX_COLORS[i % len(_BOX_COLORS)]))
    fig.update_layout(title=title, width=480, height=440, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.02})
    _square(fig)
    return fig
