"""Figures of a layer's activations: a page of per-filter maps, and the layer's mean activation on the image.

Pure functions over :class:`~xaikit.saliency.LayerActivations`, returning Plotly figures. Each filter map has its
own colour range (filters differ in scale by orders of magnitude); volumes show their middle slice.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import ArgumentError
from .saliency import overlay

__all__ = ["filter_page", "filter_grid", "activation_overlay"]


def filter_page(n_filters: int, page: int, page_size: int) -> list[int]:
    """Filter indices on ``page`` (0-based) of ``page_size`` filters each."""
    if page_size < 1 or page < 0 or page * page_size >= max(n_filters, 1):
        raise ArgumentError(f"page={page} with page_size={page_size} is past the {n_filters} filters; pages run "
                            f"from 0 to {max(0, (n_filters - 1) // max(page_size, 1))}.")
    return list(range(page * page_size, min(n_filters, (page + 1) * page_size)))


def _plane(a) -> np.ndarray:
    a = a.numpy() if hasattr(a, "numpy") else np.asarray(a)
    return a[a.shape[0] // 2] if a.ndim == 3 else a  # a volume's middle slice


def filter_grid(activations, image: int = 0, filters: Sequence[int] | None = None, *, n_cols: int = 8,
                page: int = 0, page_size: int = 16) -> go.Figure:
    """Per-filter activation maps of one image: ``filters`` (default: page ``page`` of ``page_size``).

    Examples
    --------
    >>> fig = filter_grid(layer_activations(net, x, "layer3"), image=0, page=1)  # doctest: +SKIP
    """
    if not 0 <= image < len(activations.acts):
        raise ArgumentError(f"image={image} is out of range; there are {len(activations.acts)} images.")
    filters = list(filters) if filters is not None else filter_page(activations.n_filters, page, page_size)
    bad = [f for f in filters if not 0 <= f < activations.n_filters]
    if bad:
        raise ArgumentError(f"filters {bad} do not exist; layer {activations.layer!r} has {activations.n_filters}.")
    cols = max(1, min(n_cols, len(filters)))
    rows = -(-len(filters) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"filter {f}" for f in filters],
                        horizontal_spacing=0.01, vertical_spacing=0.06)
    for k, f in enumerate(filters):
        z = _plane(activations.acts[image, f])
        fig.add_trace(go.Heatmap(z=z[::-1], colorscale="Viridis", showscale=False,
                                 hovertemplate=f"filter {f}<br>x %{{x}}, y %{{y}}<br>%{{z:.3g}}<extra></extra>"),
                      row=k // cols + 1, col=k % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    fig.update_layout(title=f"{activations.layer}: image {activations.image_ids[image]}", height=130 * rows + 80,
                      width=130 * cols + 40, margin={"l": 10, "r": 10, "t": 70, "b": 10})
    return fig


def activation_overlay(image, activations, index: int = 0, *, alpha: float = 0.6) -> go.Figure:
    """The layer's channel-mean activation, resized to the image, over the image (one-sided scale)."""
    mean = activations.upsampled(activations.mean_map()[index : index + 1])[0]
    mean = mean[mean.shape[0] // 2] if mean.ndim == 3 else mean
    if getattr(image, "ndim", 0) == 4:  # C x D x H x W volume: the same middle slice
        image = image[:, image.shape[1] // 2]
    fig = overlay(image, mean, alpha=alpha, sign="positive")
    fig.update_layout(title=f"mean activation of {activations.layer}")
    return fig
