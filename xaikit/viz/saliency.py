"""Figures of saliency maps: overlays on the image, image x method grids, galleries.

Pure functions returning Plotly figures. Maps are stored raw and signed; normalisation happens only here,
for display: signed maps on a diverging scale centred at zero (divided by the max-abs or a percentile of
|map|), positive or absolute views on sequential scales. A percentile threshold hides weak values. The
image is drawn in grey with its DICOM window when it is a :class:`~xaikit.io.MedicalImage`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..errors import ArgumentError
from ..io.image import MedicalImage
from .export import save_figure
from .image import plotly_z

__all__ = ["SIGN_MODES", "display_image", "display_map", "overlay", "overlay_traces", "method_grid", "gallery",
           "save_figure"]

SIGN_MODES = {
    "signed": "RdBu_r",  # diverging, zero in the middle: red = for the target, blue = against
    "positive": "Reds",
    "absolute": "Viridis",
}


def display_image(image, window: tuple[float, float] | None = None) -> np.ndarray:
    """Grey values in [0, 1] for an image: MedicalImage (its window or ``window``), array or C x H x W tensor."""
    if isinstance(image, MedicalImage):
        return image.display(window)
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = arr.astype(np.float64)
    if arr.ndim == 3:
        arr = arr.mean(0)  # channels of a grey image replicated for an RGB network
    if arr.ndim != 2:
        raise ArgumentError(f"image must be H x W or C x H x W; got shape {arr.shape}.")
    if window is not None:
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
    else:
        lo, hi = float(arr.min()), float(arr.max())
    return np.clip((arr - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(arr)


def display_map(saliency_map, sign: str = "signed", clip_pct: float | None = 99.5,
                threshold_pct: float = 0.0) -> np.ndarray:
    """The map scaled for display: [-1, 1] for ``"signed"``, [0, 1] otherwise; NaN where below the threshold.

    Parameters
    ----------
    saliency_map : array or tensor H x W
    sign : {"signed", "positive", "absolute"}
    clip_pct : float or None
        Scale by this percentile of |map| (values beyond are clipped); ``None`` scales by the max-abs.
    threshold_pct : float
        Hide values whose magnitude is below this percentile of the shown magnitudes (0 shows all).
    """
    if sign not in SIGN_MODES:
        raise ArgumentError(f"sign={sign!r} is not known; use one of {sorted(SIGN_MODES)}.")
    m = saliency_map.detach().cpu().numpy() if isinstance(saliency_map, torch.Tensor) else np.asarray(saliency_map)
    m = m.astype(np.float64)
    if m.ndim != 2:
        raise ArgumentError(f"saliency map must be H x W; got shape {m.shape}.")
    m = {"signed": m, "positive": np.clip(m, 0, None), "absolute": np.abs(m)}[sign]
    mag = np.abs(m)
    scale = float(np.percentile(mag, clip_pct)) if clip_pct is not None else float(mag.max())
    scale = scale if scale > 0 else (float(mag.max()) or 1.0)
    z = np.clip(m / scale, -1 if sign == "signed" else 0, 1)
    if threshold_pct > 0:
        z = np.where(np.abs(z) >= np.percentile(np.abs(z), threshold_pct), z, np.nan)
    return z


def overlay_traces(image, saliency_map, *, alpha: float = 0.5, threshold_pct: float = 0.0, sign: str = "signed",
                   window=None, clip_pct: float | None = 99.5, show_scale: bool = True) -> list[go.Heatmap]:
    """The two heatmap traces of an overlay: grey image, then the map with opacity ``alpha``."""
    grey = display_image(image, window)
    z = display_map(saliency_map, sign, clip_pct, threshold_pct)
    if z.shape != grey.shape:
        raise ArgumentError(f"map shape {z.shape} differs from image shape {grey.shape}.")
    lo = -1.0 if sign == "signed" else 0.0
    return [
        go.Heatmap(z=grey, colorscale="gray", zmin=0, zmax=1, showscale=False, hoverinfo="skip", name="image"),
        go.Heatmap(z=plotly_z(z), colorscale=SIGN_MODES[sign], zmin=lo, zmax=1.0, opacity=float(alpha), showscale=show_scale,
                   name="saliency", colorbar={"title": {"text": sign}}),
    ]


def _square(fig: go.Figure) -> None:
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    fig.update_xaxes(showticklabels=False, constrain="domain")


def overlay(image, saliency_map, *, alpha: float = 0.5, threshold_pct: float = 0.0, sign: str = "signed",
            window: tuple[float, float] | None = None, clip_pct: float | None = 99.5,
            title: str | None = None) -> go.Figure:
    """Image with the saliency map blended on top.

    Examples
    --------
    >>> fig = overlay(np.random.rand(32, 32), np.random.randn(32, 32), alpha=0.4, threshold_pct=80)
    >>> [t.name for t in fig.data]
    ['image', 'saliency']
    """
    fig = go.Figure(overlay_traces(image, saliency_map, alpha=alpha, threshold_pct=threshold_pct, sign=sign,
                                   window=window, clip_pct=clip_pct))
    fig.update_layout(title=title, width=460, height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    _square(fig)
    return fig


def method_grid(images, explanations: Mapping[str, object], *, indices: Sequence[int] | None = None,
                alpha: float = 0.5, threshold_pct: float = 0.0, sign: str = "signed", clip_pct: float | None = 99.5,
                cell: int = 180) -> go.Figure:
    """Rows = images, columns = methods; each cell an overlay. ``explanations`` maps label -> Explanation."""
    labels = list(explanations)
    if not labels:
        raise ArgumentError("method_grid needs at least one explanation.")
    n = len(next(iter(explanations.values())).maps)
    rows = list(range(n)) if indices is None else list(indices)
    fig = make_subplots(rows=len(rows), cols=len(labels), column_titles=labels, horizontal_spacing=0.01,
                        vertical_spacing=0.01, row_titles=[f"image {r}" for r in rows])
    for i, r in enumerate(rows):
        for j, label in enumerate(labels):
            traces = overlay_traces(_image(images, r), explanations[label].maps[r], alpha=alpha,
                                    threshold_pct=threshold_pct, sign=sign, clip_pct=clip_pct,
                                    show_scale=(i == 0 and j == len(labels) - 1))
            for t in traces:
                fig.add_trace(t, row=i + 1, col=j + 1)
    fig.update_layout(width=cell * len(labels) + 80, height=cell * len(rows) + 60,
                      margin={"l": 10, "r": 40, "t": 40, "b": 10})
    _square(fig)
    return fig


def gallery(images, explanation, *, n_cols: int = 4, max_images: int = 16, alpha: float = 0.5,
            threshold_pct: float = 0.0, sign: str = "signed", clip_pct: float | None = 99.5,
            class_names: Sequence[str] | None = None, cell: int = 200) -> go.Figure:
    """One method over many images; titles show predicted and explained class (never image ids)."""
    n = min(len(explanation.maps), max_images)
    n_rows = max(1, -(-n // n_cols))
    name = (lambda k: class_names[k] if class_names is not None and 0 <= k < len(class_names) else str(k))
    titles = [f"pred {name(int(explanation.preds[i]))} / target {name(int(explanation.targets[i]))}"
              for i in range(n)]
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=titles, horizontal_spacing=0.01,
                        vertical_spacing=0.05)
    for i in range(n):
        for t in overlay_traces(_image(images, i), explanation.maps[i], alpha=alpha, threshold_pct=threshold_pct,
                                sign=sign, clip_pct=clip_pct, show_scale=(i == 0)):
            fig.add_trace(t, row=i // n_cols + 1, col=i % n_cols + 1)
    fig.update_layout(title=explanation.method, width=cell * n_cols + 60, height=cell * n_rows + 80,
                      margin={"l": 10, "r": 40, "t": 60, "b": 10})
    _square(fig)
    return fig


def _image(images, i: int):
    return images[i] if not isinstance(images, torch.Tensor) else images[i]
