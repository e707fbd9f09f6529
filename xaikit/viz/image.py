"""Figures of images: window/level display, mask overlays, volume slices and mosaics.

Every function is pure: it takes arrays (or a :class:`~xaikit.io.MedicalImage`) and returns a Plotly
``Figure``; nothing is computed beyond what the picture needs. Window/level is applied by Plotly itself
(``zmin``/``zmax`` of a grey heatmap), so a widget can re-window a figure by changing two numbers.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ..errors import ArgumentError
from ..io.image import MedicalImage

__all__ = ["MASK_COLORS", "display_stride", "image_view", "mask_traces", "mosaic", "slice_view", "plotly_z"]

#: Colours for mask overlays, by mask name; unknown names cycle through ``_CYCLE``.
MASK_COLORS = {
    "left_lung": "#1f77b4",
    "right_lung": "#2ca02c",
    "lung": "#17becf",
    "heart": "#d62728",
    "lesion": "#ff7f0e",
    "marker": "#e377c2",
    "body": "#7f7f7f",
}
_CYCLE = ("#9467bd", "#8c564b", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78")

#: Largest side drawn: bigger images are subsampled for the browser (the data are never changed).
MAX_DISPLAY_SIDE = 512


def plotly_z(z: np.ndarray) -> np.ndarray | list:
    """``z`` for a Plotly trace, with NaN gaps (transparent pixels) as ``None``.

    A ``FigureWidget`` sends its traces to the browser as plain JSON lists, and JSON has no NaN: jupyter_client
    warns, falls back to non-standard JSON, and notebooks saved with such widget state are no longer valid JSON.
    ``None`` (JSON ``null``) is Plotly's own gap value, so arrays with NaN become nested lists with ``None``;
    arrays without NaN are returned unchanged (Plotly encodes them as typed arrays).
    """
    z = np.asarray(z)
    if not (np.issubdtype(z.dtype, np.floating) and np.isnan(z).any()):
        return z
    return np.where(np.isnan(z), None, z).tolist()


def display_stride(shape: Sequence[int], max_side: int = MAX_DISPLAY_SIDE) -> int:
    """Integer subsampling step that brings the largest side of ``shape`` to at most ``max_side``."""
    return max(1, int(np.ceil(max(shape) / max_side)))


def _as_plane(image: MedicalImage | np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    if isinstance(image, MedicalImage):
        if image.is_volume:
            raise ArgumentError(
                f"image_view got a volume of shape {image.shape}; use slice_view() or pick a slice."
            )
        return image.array, image.window
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ArgumentError(f"image must be 2D (H, W) or (1, H, W); got shape {arr.shape}.")
    lo, hi = np.nanpercentile(arr, [0.5, 99.5]) if np.isfinite(arr).any() else (0.0, 1.0)
    width = float(hi - lo) if hi > lo else 1.0
    return arr, (float(lo) + width / 2.0, width)


def mask_traces(
    masks: Mapping[str, np.ndarray] | None,
    *,
    stride: int = 1,
    opacity: float = 0.35,
    visible: Mapping[str, bool] | None = None,
) -> list[go.Heatmap]:
    """One translucent heatmap trace per mask (``True`` pixels coloured, the rest transparent)."""
    traces = []
    for i, (name, mask) in enumerate((masks or {}).items()):
        m = np.asarray(mask, dtype=bool)[::stride, ::stride]
        color = MASK_COLORS.get(name, _CYCLE[i % len(_CYCLE)])
        z = np.where(m, 1.0, np.nan)
        traces.append(
            go.Heatmap(
                z=plotly_z(z),
                name=name,
                colorscale=[[0.0, color], [1.0, color]],
                showscale=False,
                opacity=opacity,
                hoverinfo="skip",
                visible=True if visible is None else bool(visible.get(name, True)),
                dx=stride,
                dy=stride,
            )
        )
    return traces


def image_view(
    image: MedicalImage | np.ndarray,
    *,
    window: tuple[float, float] | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    mask_opacity: float = 0.35,
    title: str | None = None,
    height: int = 460,
) -> go.Figure:
    """A grey image with a display window and optional mask overlays.

    Parameters
    ----------
    image : MedicalImage or array (H, W)
        The image; a ``MedicalImage`` brings its default window.
    window : (center, width), optional
        Display window in the image's units; overrides the image's default.
    masks : dict of name -> bool array (H, W), optional
        Overlays, one trace each (trace names are the mask names, so widgets can toggle them).
    title : str, optional
        Figure title. Never put patient identifiers here.

    Examples
    --------
    >>> import numpy as np
    >>> fig = image_view(np.eye(8), masks={"lesion": np.eye(8, dtype=bool)})
    >>> [t.name for t in fig.data]
    ['image', 'lesion']
    """
    arr, default_window = _as_plane(image)
    center, width = window or default_window
    stride = display_stride(arr.shape)
    fig = go.Figure(
        go.Heatmap(
            z=arr[::stride, ::stride],
            name="image",
            colorscale="gray",
            zmin=center - width / 2.0,
            zmax=center + width / 2.0,
            showscale=False,
            dx=stride,
            dy=stride,
            hovertemplate="x=%{x}, y=%{y}<br>value=%{z:.4g}<extra></extra>",
        )
    )
    for trace in mask_traces(masks, stride=stride, opacity=mask_opacity):
        fig.add_trace(trace)
    _image_layout(fig, arr.shape, title, height)
    return fig


def _image_layout(fig: go.Figure, shape: Sequence[int], title: str | None, height: int) -> None:
    fig.update_yaxes(autorange="reversed", scaleanchor="x", scaleratio=1, showticklabels=False, constrain="domain")
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        showlegend=False,
        plot_bgcolor="black",
    )


def slice_view(
    volume: MedicalImage | np.ndarray,
    index: int | None = None,
    *,
    axis: int = 0,
    window: tuple[float, float] | None = None,
    labelmap: np.ndarray | None = None,
    names: Mapping[int, str] | None = None,
    title: str | None = None,
    height: int = 460,
) -> go.Figure:
    """One slice of a ``(D, H, W)`` volume, with the label map's labels as mask overlays.

    ``index`` defaults to the middle slice along ``axis``.
    """
    arr = volume.array if isinstance(volume, MedicalImage) else np.asarray(volume, dtype=np.float32)
    if arr.ndim != 3:
        raise ArgumentError(f"volume must be 3D (D, H, W); got shape {arr.shape}.")
    if not 0 <= axis < 3:
        raise ArgumentError(f"axis must be 0, 1 or 2; got {axis}.")
    index = arr.shape[axis] // 2 if index is None else int(index)
    if not 0 <= index < arr.shape[axis]:
        raise ArgumentError(f"slice index {index} is outside 0..{arr.shape[axis] - 1} along axis {axis}.")
    plane = np.take(arr, index, axis=axis)
    masks = None
    if labelmap is not None:
        lab = np.take(np.asarray(labelmap), index, axis=axis)
        labels = names or {int(v): f"label_{int(v)}" for v in np.unique(labelmap) if v != 0}
        masks = {name: lab == value for value, name in labels.items() if value != 0}
    win = window or (volume.window if isinstance(volume, MedicalImage) else None)
    return image_view(plane, window=win, masks=masks, title=title, height=height)


def mosaic(
    images: Sequence[np.ndarray],
    *,
    ncols: int = 4,
    pad: int = 2,
) -> np.ndarray:
    """Tile equally sized 2D images (values in [0, 1]) into one array, for PNG export and README grids."""
    if len(images) == 0:
        raise ArgumentError("mosaic needs at least one image.")
    shapes = {np.shape(im) for im in images}
    if len(shapes) != 1:
        raise ArgumentError(f"mosaic needs images of one shape; got {sorted(shapes)}.")
    h, w = next(iter(shapes))
    nrows = int(np.ceil(len(images) / ncols))
    out = np.ones((nrows * (h + pad) - pad, ncols * (w + pad) - pad), dtype=np.float32)
    for k, im in enumerate(images):
        r, c = divmod(k, ncols)
        out[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = np.clip(im, 0, 1)
    return out
