"""Figures of regions: translucent region overlays on the image, and regions coloured by a score.

Pure functions: arrays (or a :class:`~xaikit.regions.RegionSet`) in, a Plotly ``Figure`` out.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import ArgumentError
from ..regions.regionset import RegionSet, as_numpy

__all__ = ["REGION_COLORS", "region_overlay", "region_value_map"]

#: Qualitative colours cycled over regions (Plotly's D3 palette).
REGION_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")


def _plane(image: Any) -> np.ndarray:
    if hasattr(image, "display") and hasattr(image, "array"):
        image = image.display()
    arr = as_numpy(image).astype(float)
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = arr.mean(axis=0)
    if arr.ndim != 2:
        raise ArgumentError(f"region figures need a 2D image; got shape {arr.shape}.")
    return arr


def _base(image: np.ndarray, title: str) -> go.Figure:
    lo, hi = np.percentile(image, [0.5, 99.5])
    fig = go.Figure(go.Heatmap(z=image, colorscale="gray", zmin=lo, zmax=hi, showscale=False, name="image",
                               hoverinfo="skip"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40, b=10), legend=dict(itemsizing="constant"))
    return fig


def region_overlay(image: Any, regions: RegionSet, index: int = 0, names: Sequence[str] | None = None,
                   opacity: float = 0.4, title: str = "") -> go.Figure:
    """The image with one translucent, legend-toggleable trace per region.

    Parameters
    ----------
    image
        ``H x W`` array (or MedicalImage / ``1 x H x W`` tensor) on the regions' plane.
    regions
        Region set; for a per-image set, ``index`` picks the image.
    names
        Regions to draw (default all).
    """
    img = _plane(image)
    if img.shape != regions.shape:
        raise ArgumentError(f"image is {img.shape} but the regions are {regions.shape}; they must share a plane.")
    fig = _base(img, title)
    masks = regions.as_dict(index)
    for i, name in enumerate(names or regions.names):
        color = REGION_COLORS[i % len(REGION_COLORS)]
        fig.add_trace(go.Heatmap(z=np.where(masks[name], 1.0, np.nan), colorscale=[[0, color], [1, color]],
                                 showscale=False, opacity=opacity, name=name, showlegend=True,
                                 hovertemplate=f"{name}<extra></extra>"))
    return fig


def region_value_map(image: Any, regions: RegionSet, scores: pd.DataFrame, value: str = "density_ratio",
                     index: int = 0, image_id: str | None = None, method: str | None = None,
                     opacity: float = 0.6) -> go.Figure:
    """Each region painted with its score for one image (overlapping regions: the later one on top).

    ``scores`` is a :func:`~xaikit.regions.region_scores` table; ``image_id`` selects its rows
    (default: the ``index``-th image id in the table) and ``method`` the explanation method.
    """
    img = _plane(image)
    if method is not None:
        scores = scores[scores["method"] == method]
    ids = scores["image_id"].drop_duplicates().tolist()
    image_id = image_id if image_id is not None else ids[index]
    rows = scores[scores["image_id"] == image_id]
    if rows["region"].duplicated().any():
        raise ArgumentError(f"region_value_map: image {image_id!r} has several rows per region (methods "
                            f"{sorted(rows['method'].unique())}); pass method=...")
    rows = rows.set_index("region")[value]
    z = np.full(regions.shape, np.nan)
    for name, mask in regions.as_dict(index).items():
        if name in rows.index:
            z[mask] = rows.loc[name]
    fig = _base(img, f"{value} per region")
    fig.add_trace(go.Heatmap(z=z, colorscale="Viridis", opacity=opacity, name=value,
                             colorbar=dict(title=value), hovertemplate=f"{value}: %{{z:.3g}}<extra></extra>"))
    return fig
