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
from .image import plotly_z
from .stats import region_boxplot

__all__ = ["REGION_COLORS", "region_overlay", "region_value_map", "region_gallery", "static_region_explorer"]

#: Qualitative colours cycled over regions (Plotly's D3 palette, then darker tones: lung zones with heart,
#: mediastinum, border and corners are 12 regions, and two regions of one colour cannot be told apart).
REGION_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39", "#7b4173", "#8c6d31", "#3182bd")


def _plane(image: Any) -> np.ndarray:
    if hasattr(image, "display") and hasattr(image, "array"):
        image = image.display()
    arr = as_numpy(image).astype(float)
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = arr.mean(axis=0)
    if arr.ndim != 2:
        raise ArgumentError(f"region figures need a 2D image; got shape {arr.shape}.")
    return arr


def _image_trace(image: np.ndarray) -> go.Heatmap:
    lo, hi = np.percentile(image, [0.5, 99.5])
    return go.Heatmap(z=image.astype(np.float32), colorscale="gray", zmin=lo, zmax=hi, showscale=False,
                      name="image", showlegend=False, hoverinfo="skip")


def _base(image: np.ndarray, title: str) -> go.Figure:
    fig = go.Figure(_image_trace(image))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False, zeroline=False)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    h, w = image.shape
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40, b=10), legend=dict(itemsizing="constant"),
                      height=480, width=int(440 * w / h) + 200, plot_bgcolor="white")
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
        fig.add_trace(_mask_trace(masks[name], color, opacity, name, showlegend=True))
    for i, name in enumerate(names or regions.names):
        fig.add_trace(_swatch(REGION_COLORS[i % len(REGION_COLORS)], opacity, name))
    fig.update_layout(legend_title_text=LEGEND_NOTE)
    return fig


#: Legend title of every region figure: how to read sides and overlaps.
LEGEND_NOTE = ("regions<br><sub>radiological view: the patient's left<br>is on the image's right; overlapping<br>"
               "regions mix their colours</sub>")


def _mask_trace(mask: np.ndarray, color: str, opacity: float, name: str, showlegend: bool) -> go.Heatmap:
    # 0/1 bytes with a transparent zero rather than NaN gaps: strict JSON in widget state, compact typed arrays.
    # A heatmap's own legend item is not the colour drawn, so the legend entry is a swatch (_swatch) instead.
    return go.Heatmap(z=mask.astype(np.uint8), colorscale=[[0, "rgba(0,0,0,0)"], [1, color]], zmin=0, zmax=1,
                      showscale=False, opacity=opacity, name=name, legendgroup=name, showlegend=False,
                      hovertemplate=f"{name}<extra></extra>")


def _swatch(color: str, opacity: float, name: str) -> go.Scatter:
    """A legend entry in the region's colour and opacity (on white, as over a mid-grey image); clicking it
    toggles the region in every panel (same ``legendgroup``)."""
    return go.Scatter(x=[None], y=[None], mode="markers", name=name, legendgroup=name, showlegend=True,
                      marker=dict(symbol="square", size=14, color=color, opacity=max(opacity, 0.6)),
                      hoverinfo="skip")


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
    fig = _base(img, f"{value} per region (overlapping regions: the later one on top)")
    fig.add_trace(go.Heatmap(z=plotly_z(z), colorscale="Viridis", opacity=opacity, name=value,
                             colorbar=dict(title=value), hovertemplate=f"{value}: %{{z:.3g}}<extra></extra>"))
    return fig


def region_gallery(images: Sequence[Any], regions: RegionSet | Sequence[RegionSet],
                   titles: Sequence[str] | None = None, names: Sequence[str] | None = None, ncols: int = 4,
                   opacity: float = 0.45, panel_px: int = 200) -> go.Figure:
    """A grid of images, each with its own regions overlaid (legend entries toggle a region in every panel).

    Parameters
    ----------
    images
        ``N`` images (``H x W`` arrays, ``1 x H x W`` tensors or MedicalImages), each on its regions' plane.
    regions
        A per-image :class:`RegionSet` of ``N`` images, a shared one, or one set per image (planes may differ).
    titles
        One panel title per image (never patient identifiers).
    names
        Regions to draw (default all).
    ncols, panel_px
        Panels per row and the side of one panel in pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from xaikit.regions import grid
    >>> fig = region_gallery([np.zeros((8, 8))] * 2, grid(1, 2, (8, 8)), titles=["a", "b"])
    >>> len(fig.data)  # per panel: the image and two regions; once: a legend swatch per region
    8
    """
    from plotly.subplots import make_subplots

    sets = _per_panel(regions, len(images))
    if titles is not None and len(titles) != len(images):
        raise ArgumentError(f"region_gallery: {len(titles)} titles for {len(images)} images.")
    if ncols < 1 or not len(images):
        raise ArgumentError(f"region_gallery needs images and ncols >= 1; got {len(images)} images, ncols={ncols}.")
    nrows = -(-len(images) // ncols)
    fig = make_subplots(nrows, min(ncols, len(images)), subplot_titles=list(titles or []),
                        horizontal_spacing=0.01, vertical_spacing=0.06 if titles else 0.02)
    for k, (image, (rs, index)) in enumerate(zip(images, sets)):
        row, col = divmod(k, ncols)
        _add_panel(fig, _plane(image), rs, index, names, opacity, row + 1, col + 1, first=k == 0)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=panel_px * nrows + 60, width=panel_px * min(ncols, len(images)) + 220,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(itemsizing="constant", title_text=LEGEND_NOTE),
                      plot_bgcolor="white")
    return fig


def _per_panel(regions: RegionSet | Sequence[RegionSet], n: int) -> list[tuple[RegionSet, int]]:
    if isinstance(regions, RegionSet):
        if not regions.shared and regions.n_images != n:
            raise ArgumentError(f"region_gallery: the region set has masks for {regions.n_images} images, "
                                f"but {n} images were given.")
        return [(regions, i) for i in range(n)]
    regions = list(regions)
    if len(regions) != n:
        raise ArgumentError(f"region_gallery: {len(regions)} region sets for {n} images; pass one per image.")
    return [(rs, 0) for rs in regions]


def _add_panel(fig: go.Figure, img: np.ndarray, regions: RegionSet, index: int, names: Sequence[str] | None,
               opacity: float, row: int, col: int, first: bool) -> None:
    if img.shape != regions.shape:
        raise ArgumentError(f"region_gallery: an image is {img.shape} but its regions are {regions.shape}; "
                            "send the masks through the image's Preprocess (RegionSet.apply).")
    fig.add_trace(_image_trace(img), row=row, col=col)
    masks = regions.as_dict(index)
    for i, name in enumerate(names or regions.names):
        color = REGION_COLORS[i % len(REGION_COLORS)]
        fig.add_trace(_mask_trace(masks[name], color, opacity, name, showlegend=first), row=row, col=col)
        if first:
            fig.add_trace(_swatch(color, opacity, name), row=row, col=col)
    axis = fig.get_subplot(row, col)
    fig.update_yaxes(scaleanchor=axis.xaxis.plotly_name.replace("axis", ""), row=row, col=col)


def static_region_explorer(scores: pd.DataFrame, value: str = "mass_frac", group: str = "label",
                           tests: pd.DataFrame | None = None, regions: Sequence[str] | None = None) -> go.Figure:
    """The static counterpart of :func:`xaikit.widgets.regions.region_explorer`: one box/strip plot per
    method, switched with a dropdown that works without a kernel (saved HTML, nbviewer, exported pages).

    Parameters
    ----------
    scores
        A :func:`~xaikit.regions.region_scores` table (several methods allowed).
    value, group, tests, regions
        As in :func:`xaikit.viz.stats.region_boxplot`; the significance marks of ``tests`` follow the method.

    Examples
    --------
    >>> import numpy as np
    >>> from xaikit.regions import grid, region_scores
    >>> s = region_scores(np.random.default_rng(0).random((4, 6, 6)), grid(1, 2, (6, 6)), labels=[0, 1, 0, 1])
    >>> [b.label for b in static_region_explorer(s).layout.updatemenus[0].buttons]
    ['unknown']
    """

    methods = sorted(scores["method"].unique().tolist(), key=str)
    if not methods:
        raise ArgumentError("static_region_explorer: the scores table is empty.")
    panels = [region_boxplot(scores, value, group, tests, m, regions) for m in methods]
    fig = go.Figure(layout=panels[0].layout)
    spans, start = [], 0
    for k, panel in enumerate(panels):
        for trace in panel.data:
            fig.add_trace(trace.update(visible=k == 0))
        spans.append((start, start + len(panel.data)))
        start += len(panel.data)
    buttons = [dict(label=str(m), method="update",
                    args=[{"visible": [lo <= t < hi for t in range(start)]},
                          {"title.text": p.layout.title.text,
                           "annotations": [a.to_plotly_json() for a in p.layout.annotations]}])
               for m, p, (lo, hi) in zip(methods, panels, spans)]
    fig.update_layout(updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.15,
                                        yanchor="top", showactive=True)])
    return fig
