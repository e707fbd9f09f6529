"""Figures of volumes and their saliency maps: three orthogonal planes with crosshairs, maximum-intensity projections.

Pure functions returning Plotly figures (the explorer widget in :mod:`xaikit.widgets.volume` only wires sliders
to them; a figure is also the static fallback where widgets do not run). The three planes of a ``(D, H, W)``
volume are ``axial = volume[d]``, ``coronal = volume[:, h]`` and ``sagittal = volume[:, :, w]``; each panel
keeps the voxel aspect ratio from the spacing, coronal and sagittal panels show superior up when the affine
says which way is up, and dashed crosshairs mark where the other two planes cut. Maps use the display scaling
of :func:`xaikit.viz.saliency.display_map` (sign kept, percentile clipping, threshold).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..errors import ArgumentError
from ..io.image import MedicalImage
from .image import plotly_z
from .saliency import SIGN_MODES, display_map

__all__ = ["PLANES", "three_plane_view", "mip_view", "volume_planes"]

PLANES = ("axial", "coronal", "sagittal")


def _array(volume, what: str) -> np.ndarray:
    if isinstance(volume, MedicalImage):
        arr = volume.array
    elif isinstance(volume, torch.Tensor):
        arr = volume.detach().cpu().numpy()
    else:
        arr = np.asarray(volume)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ArgumentError(f"{what} must be a D x H x W volume; got shape {arr.shape}.")
    return arr.astype(np.float64)


def _grey(volume, window) -> np.ndarray:
    arr = _array(volume, "volume")
    if window is None and isinstance(volume, MedicalImage):
        window = volume.window
    if window is not None:
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
    else:
        lo, hi = float(arr.min()), float(arr.max())
    return np.clip((arr - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(arr)


def volume_planes(volume: np.ndarray, point: Sequence[int], superior_up: bool = False) -> dict[str, np.ndarray]:
    """The axial, coronal and sagittal planes through ``point = (d, h, w)`` (rows of coronal/sagittal flipped
    when ``superior_up`` so the head is at the top)."""
    d, h, w = (int(p) for p in point)
    planes = {"axial": volume[d], "coronal": volume[:, h, :], "sagittal": volume[:, :, w]}
    if superior_up:
        planes["coronal"], planes["sagittal"] = planes["coronal"][::-1], planes["sagittal"][::-1]
    return planes


def _superior_up(volume, affine=None) -> bool:
    """True when increasing ``d`` moves superior (the affine's ``d`` column has a positive S component); the
    ``affine`` given wins over the volume's own (a preprocessed tensor has none: pass its geometry's)."""
    affine = getattr(volume, "affine", None) if affine is None else np.asarray(affine, dtype=float)
    if affine is not None and np.shape(affine) != (4, 4):
        raise ArgumentError(f"affine must be a 4 x 4 voxel-to-world matrix; got shape {np.shape(affine)}.")
    return bool(affine is not None and affine[2, 0] > 0)


def _check_point(point, shape) -> tuple[int, int, int]:
    if point is None:
        return tuple(s // 2 for s in shape)
    point = tuple(int(p) for p in point)
    if len(point) != 3 or any(not 0 <= p < s for p, s in zip(point, shape)):
        raise ArgumentError(f"point={point!r} must be (d, h, w) inside the volume {shape}.")
    return point


def three_plane_view(volume, saliency=None, *, point: Sequence[int] | None = None,
                       window: tuple[float, float] | None = None, alpha: float = 0.5, threshold_pct: float = 0.0,
                       sign: str = "signed", clip_pct: float | None = 99.5, spacing: Sequence[float] | None = None,
                       affine=None, title: str | None = None, height: int = 360) -> go.Figure:
    """Axial, coronal and sagittal slices through ``point`` with crosshairs, optionally with a map on top.

    Parameters
    ----------
    volume : MedicalImage, array or tensor ``D x H x W`` (or ``1 x D x H x W``)
        Grey image; a MedicalImage brings its window, spacing and (for superior-up display) affine.
    saliency : array or tensor ``D x H x W``, optional
        The map on the same grid; scaled over the whole volume (so the three planes share one colour scale).
    point : (d, h, w), optional
        Where the planes cut; default the centre.
    window, alpha, threshold_pct, sign, clip_pct
        Display window of the image; map opacity, threshold percentile, sign mode and clipping percentile.
    spacing : (float, float, float), optional
        Voxel size for the aspect ratio (default the MedicalImage's, else isotropic).
    affine : 4 x 4 array, optional
        Voxel ``(d, h, w)`` to world (RAS mm) matrix, only to draw superior up in the coronal and sagittal
        panels (default the MedicalImage's; for a preprocessed tensor pass ``pre.geometry(image).out_affine``).

    Examples
    --------
    >>> vol = np.random.rand(8, 10, 12)
    >>> fig = three_plane_view(vol, np.random.randn(8, 10, 12), point=(4, 5, 6))
    >>> [t.name for t in fig.data]
    ['axial image', 'axial map', 'coronal image', 'coronal map', 'sagittal image', 'sagittal map']
    """
    if sign not in SIGN_MODES:
        raise ArgumentError(f"sign={sign!r} is not known; use one of {sorted(SIGN_MODES)}.")
    grey = _grey(volume, window)
    point = _check_point(point, grey.shape)
    spacing = tuple(spacing) if spacing is not None else getattr(volume, "spacing", None) or (1.0, 1.0, 1.0)
    up = _superior_up(volume, affine)
    maps = None
    if saliency is not None:
        m = _array(saliency, "saliency")
        if m.shape != grey.shape:
            raise ArgumentError(f"saliency map shape {m.shape} differs from the volume's {grey.shape}.")
        maps = display_map(m.reshape(m.shape[0], -1), sign, clip_pct, threshold_pct).reshape(m.shape)
    fig = make_subplots(rows=1, cols=3, subplot_titles=[f"{p} {i}" for p, i in zip(PLANES, point)],
                        horizontal_spacing=0.03)
    g_planes = volume_planes(grey, point, up)
    m_planes = volume_planes(maps, point, up) if maps is not None else None
    for col, plane in enumerate(PLANES, start=1):
        fig.add_trace(go.Heatmap(z=plotly_z(g_planes[plane]), colorscale="gray", zmin=0, zmax=1, showscale=False,
                                 hoverinfo="skip", name=f"{plane} image"), row=1, col=col)
        if m_planes is not None:
            lo = -1.0 if sign == "signed" else 0.0
            fig.add_trace(go.Heatmap(z=plotly_z(m_planes[plane]), colorscale=SIGN_MODES[sign], zmin=lo, zmax=1.0,
                                     opacity=float(alpha), showscale=col == 3, name=f"{plane} map",
                                     colorbar={"title": {"text": sign}}), row=1, col=col)
    _crosshairs(fig, point, grey.shape, up)
    _aspect(fig, spacing)
    _title_above_panels(fig, title, height)
    return fig


def _title_above_panels(fig: go.Figure, title: str | None, height: int) -> None:
    """Size and margins of a three-panel figure; a title gets a band of its own above the panel titles."""
    top = 85 if title else 50
    fig.update_layout(title={"text": title, "y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 12}},
                      height=height + top - 50, width=3 * height, margin={"l": 10, "r": 10, "t": top, "b": 10})


def _crosshairs(fig: go.Figure, point, shape, up: bool) -> None:
    d, h, w = point
    row_d = shape[0] - 1 - d if up else d
    lines = {1: [("v", w), ("h", h)], 2: [("v", w), ("h", row_d)], 3: [("v", h), ("h", row_d)]}
    for col, cuts in lines.items():
        for kind, pos in cuts:
            if kind == "v":
                fig.add_vline(x=pos, line={"color": "yellow", "width": 1, "dash": "dash"}, row=1, col=col)
            else:
                fig.add_hline(y=pos, line={"color": "yellow", "width": 1, "dash": "dash"}, row=1, col=col)


def _aspect(fig: go.Figure, spacing) -> None:
    sd, sh, sw = (float(s) for s in spacing)
    ratios = {1: sh / sw, 2: sd / sw, 3: sd / sh}  # row spacing over column spacing of each panel
    for col, ratio in ratios.items():
        xref = "x" if col == 1 else f"x{col}"
        fig.update_yaxes(autorange="reversed", scaleanchor=xref, scaleratio=ratio, showticklabels=False, row=1, col=col)
        fig.update_xaxes(showticklabels=False, constrain="domain", row=1, col=col)


def mip_view(saliency, *, sign: str = "positive", clip_pct: float | None = 99.5, volume=None,
               window: tuple[float, float] | None = None, spacing: Sequence[float] | None = None, affine=None,
               title: str | None = None, height: int = 360) -> go.Figure:
    """Maximum-intensity projections of a map along the three axes (optionally over the image's MIP in grey).

    For ``sign="signed"`` the projection keeps, per ray, the value of largest magnitude with its sign. ``affine``
    (default ``volume``'s) draws superior up in the coronal and sagittal projections, as in
    :func:`three_plane_view`.

    Examples
    --------
    >>> fig = mip_view(np.random.rand(8, 10, 12))
    >>> [t.name for t in fig.data]
    ['axial MIP', 'coronal MIP', 'sagittal MIP']
    """
    if sign not in SIGN_MODES:
        raise ArgumentError(f"sign={sign!r} is not known; use one of {sorted(SIGN_MODES)}.")
    m = _array(saliency, "saliency")
    shown = display_map(m.reshape(m.shape[0], -1), sign, clip_pct).reshape(m.shape)
    up = _superior_up(volume, affine)
    grey = _grey(volume, window) if volume is not None else None
    spacing = tuple(spacing) if spacing is not None else getattr(volume, "spacing", None) or (1.0, 1.0, 1.0)
    fig = make_subplots(rows=1, cols=3, subplot_titles=[f"{p} MIP" for p in PLANES], horizontal_spacing=0.03)
    lo = -1.0 if sign == "signed" else 0.0
    for col, (plane, axis) in enumerate(zip(PLANES, (0, 1, 2)), start=1):
        proj = _signed_max(shown, axis)
        if axis > 0 and up:
            proj = proj[::-1]
        if grey is not None:
            g = grey.max(axis)
            fig.add_trace(go.Heatmap(z=plotly_z(g[::-1] if axis > 0 and up else g), colorscale="gray", zmin=0, zmax=1,
                                     showscale=False, hoverinfo="skip", name=f"{plane} image MIP"), row=1, col=col)
        fig.add_trace(go.Heatmap(z=plotly_z(proj), colorscale=SIGN_MODES[sign], zmin=lo, zmax=1.0, showscale=col == 3,
                                 opacity=0.6 if grey is not None else 1.0, name=f"{plane} MIP"), row=1, col=col)
    _aspect(fig, spacing)
    _title_above_panels(fig, title, height)
    return fig


def _signed_max(values: np.ndarray, axis: int) -> np.ndarray:
    """Per ray, the value of largest magnitude (sign kept); NaN only where the whole ray is NaN."""
    mag = np.where(np.isnan(values), -np.inf, np.abs(values))
    idx = np.expand_dims(mag.argmax(axis), axis)
    return np.take_along_axis(values, idx, axis).squeeze(axis)
