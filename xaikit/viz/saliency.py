"""Figures of saliency maps: overlays on the image, image x method grids, galleries.

Pure functions returning Plotly figures. Maps are stored raw and signed; normalization happens only here,
for display: signed maps on a diverging scale centred at zero (divided by the max-abs or a percentile of
|map|), non-negative maps (Grad-CAM) and positive or absolute views on one-sided scales (``sign="auto"``
picks). The overlay's opacity follows |relevance|: zero relevance is transparent, so the image shows where
the map says nothing. A percentile threshold hides weak values. The image is drawn in grey with its DICOM
window when it is a :class:`~xaikit.io.MedicalImage`; with the model's ``Preprocess`` a map is laid over the
original image at its own resolution (:meth:`Preprocess.geometry` ``.inverse``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..domain import domain_badge
from ..errors import ArgumentError
from ..io.image import MedicalImage
from .export import save_figure
from .image import MAX_DISPLAY_SIDE, display_stride, plotly_z

__all__ = ["SIGN_MODES", "display_image", "display_map", "overlay", "overlay_traces", "method_grid", "gallery",
           "save_figure", "resolve_sign", "alpha_colorscale", "map_on_image"]

SIGN_MODES = {
    "signed": "RdBu_r",  # diverging, zero in the middle: red = for the target, blue = against
    "positive": "Reds",
    "absolute": "Viridis",
}


def resolve_sign(sign: str, saliency_map=None) -> str:
    """``"auto"`` becomes ``"positive"`` for a map without negative values (Grad-CAM), else ``"signed"``."""
    if sign == "auto":
        m = _numpy(saliency_map) if saliency_map is not None else np.zeros(1)
        return "positive" if np.nanmin(m) >= 0 else "signed"
    if sign not in SIGN_MODES:
        raise ArgumentError(f"sign={sign!r} is not known; use 'auto' or one of {sorted(SIGN_MODES)}.")
    return sign


def alpha_colorscale(sign: str, steps: int = 11) -> list[list]:
    """The colour scale of ``sign`` with opacity rising with |value|: transparent where the map is zero.

    Plotly interpolates the alpha channel of ``rgba`` colour scales, so one heatmap trace shows a per-pixel
    opacity; the trace's ``opacity`` (the alpha slider) then scales it as a whole.
    """
    from plotly.colors import get_colorscale, sample_colorscale

    pos = np.linspace(0.0, 1.0, steps)
    rgb = sample_colorscale(get_colorscale(SIGN_MODES[resolve_sign(sign)]), list(pos), colortype="tuple")
    weight = np.abs(2 * pos - 1) if sign == "signed" else pos
    return [[float(p), f"rgba({r * 255:.0f},{g * 255:.0f},{b * 255:.0f},{w:.3f})"]
            for p, (r, g, b), w in zip(pos, rgb, weight)]


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def display_image(image, window: tuple[float, float] | None = None) -> np.ndarray:
    """Grey values in [0, 1] for an image: MedicalImage (its window or ``window``), array or C x H x W tensor."""
    if isinstance(image, MedicalImage):
        return image.display(window)
    arr = _numpy(image).astype(np.float64)
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
    sign : {"signed", "positive", "absolute", "auto"}
        ``"auto"``: ``"positive"`` for a map without negative values, else ``"signed"``.
    clip_pct : float or None
        Scale by this percentile of |map| (values beyond are clipped); ``None`` scales by the max-abs.
    threshold_pct : float
        Hide values whose magnitude is below this percentile of the shown magnitudes (0 shows all).
    """
    m = _numpy(saliency_map).astype(np.float64)
    sign = resolve_sign(sign, m)
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


def map_on_image(saliency_map, image_shape: tuple[int, int], preprocess=None) -> np.ndarray:
    """The map on the image's grid: unchanged when the shapes agree, else sent back through ``preprocess``.

    A map is explained on the model's input (e.g. 128 x 128); ``preprocess.geometry(image_shape).inverse``
    crops a letterbox's padding away and resamples the rest onto the original image (e.g. 650 x 1028).
    """
    m = _numpy(saliency_map).astype(np.float32)
    if m.shape == tuple(image_shape):
        return m
    if preprocess is None:
        raise ArgumentError(f"map shape {m.shape} differs from image shape {tuple(image_shape)}: pass the "
                            "model's Preprocess (preprocess=ckpt.preprocess) to lay the map over the original "
                            "image, or pass the preprocessed image.")
    return preprocess.geometry(tuple(image_shape), warn=False).inverse(m)  # preparing the input warned


def overlay_traces(image, saliency_map, *, alpha: float = 0.7, threshold_pct: float = 0.0, sign: str = "auto",
                   window=None, clip_pct: float | None = 99.5, show_scale: bool = True, preprocess=None,
                   max_side: int = MAX_DISPLAY_SIDE, colorbar: dict | None = None,
                   compact: bool = False) -> list[go.Heatmap]:
    """The two traces of an overlay: grey image, then the map as a heatmap, its opacity following |relevance|
    (at most ``alpha``). Both are subsampled to at most ``max_side`` pixels a side for the browser (the axes
    stay in image pixels).

    ``compact`` (grids and galleries, which repeat the image in every cell) sends the grey image as a grey PNG
    (``go.Image``, about 10x smaller than a float heatmap) and the map, when no threshold hides pixels, as whole
    percent of the display scale in one signed byte (-100..100: the hover's two decimals, a quarter of the float32
    bytes; the colour bar and the hover read in %). Without it both are float heatmaps a widget can update.
    """
    grey = display_image(image, window)
    m = map_on_image(saliency_map, grey.shape, preprocess)
    sign = resolve_sign(sign, m)
    step = display_stride(grey.shape, max_side)
    z = display_map(m, sign, clip_pct, threshold_pct)[::step, ::step]
    lo = -1.0 if sign == "signed" else 0.0
    bar = {"title": {"text": "relevance" if sign == "signed" else sign}, "thickness": 12, **(colorbar or {})}
    base = _png_trace(grey[::step, ::step], step) if compact else go.Heatmap(
        z=grey[::step, ::step].astype(np.float32), colorscale="gray", zmin=0, zmax=1, showscale=False,
        hoverinfo="skip", name="image", dx=step, dy=step)
    if compact and not np.isnan(z).any():  # percent in a byte; a thresholded map keeps NaN gaps (float32)
        values, scale, hover, bar = np.round(z * 100).astype(np.int8), 100.0, "%{z}%", {**bar, "ticksuffix": "%"}
    else:
        values, scale, hover = plotly_z(z.astype(np.float32)), 1.0, "%{z:.2f}"
    return [
        base,
        go.Heatmap(z=values, colorscale=alpha_colorscale(sign), zmin=lo * scale, zmax=scale, opacity=float(alpha),
                   showscale=show_scale, name="saliency", colorbar=bar, dx=step, dy=step,
                   hovertemplate=f"x=%{{x}}, y=%{{y}}<br>relevance {hover}<extra></extra>"),
    ]


def _png_trace(grey: np.ndarray, step: int) -> go.Image:
    """A grey [0, 1] plane as an embedded PNG image trace, pixel centres at the heatmap's coordinates."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    # one grey channel (a browser draws any PNG); Pillow's optimizer: same pixels, fewer bytes
    Image.fromarray((np.clip(grey, 0, 1) * 255).round().astype(np.uint8), mode="L").save(buf, "PNG", optimize=True)
    return go.Image(source="data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), x0=0, y0=0,
                    dx=step, dy=step, name="image", hoverinfo="skip")


def _square(fig: go.Figure) -> None:
    """Image axes: square pixels, row 0 at the top, no ticks, grid lines, zero lines or background."""
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False, zeroline=False)
    fig.update_xaxes(showticklabels=False, constrain="domain", showgrid=False, zeroline=False)
    fig.update_layout(plot_bgcolor="white")


def overlay(image, saliency_map, *, alpha: float = 0.7, threshold_pct: float = 0.0, sign: str = "auto",
            window: tuple[float, float] | None = None, clip_pct: float | None = 99.5,
            title: str | None = None, preprocess=None) -> go.Figure:
    """Image with the saliency map blended on top (transparent where the map is zero).

    Parameters
    ----------
    image : MedicalImage, array H x W or tensor C x H x W
        The original image (with ``preprocess``) or the model's input.
    saliency_map : array or tensor
        A map of an :class:`~xaikit.saliency.Explanation` (``explanation.maps[i]``).
    preprocess : Preprocess, optional
        The model's preprocessing (``ckpt.preprocess``): lays a map of the model's input size over the
        original image at the original's resolution.
    sign : {"auto", "signed", "positive", "absolute"}
        ``"auto"``: a one-sided scale for maps without negative values, else a diverging one.

    Examples
    --------
    >>> fig = overlay(np.random.rand(32, 32), np.random.randn(32, 32), alpha=0.4, threshold_pct=80)
    >>> [t.name for t in fig.data]
    ['image', 'saliency']
    """
    _refuse_volume(image, saliency_map)
    traces = overlay_traces(image, saliency_map, alpha=alpha, threshold_pct=threshold_pct, sign=sign,
                            window=window, clip_pct=clip_pct, preprocess=preprocess)
    h, w = np.shape(traces[0].z)
    fig = go.Figure(traces)
    side = 420
    fig.update_layout(title=title, width=int(side * min(2.0, w / h)) + 110, height=side + (50 if title else 20),
                      margin={"l": 10, "r": 10, "t": 50 if title else 20, "b": 10})
    _square(fig)
    return fig


def _refuse_volume(image, saliency_map) -> None:
    """``overlay`` draws one 2D image: a volume or a 3D map gets the function that shows it, not a shape error."""
    image_shape = tuple(image.shape) if isinstance(image, MedicalImage) else tuple(np.shape(_numpy(image)))
    map_shape = tuple(np.shape(_numpy(saliency_map)))
    volume = (isinstance(image, MedicalImage) and image.is_volume) or len(image_shape) > 3 or len(map_shape) > 2
    if volume:
        raise ArgumentError(
            f"overlay draws one 2D image and its H x W map; got an image of shape {image_shape} and a map of shape "
            f"{map_shape}. For a volume and its 3D map use xaikit.viz.volume.three_plane_view(x[0], "
            "exp.maps[0]) (axial, coronal, sagittal planes on the model's grid), or lay the map on the scan's own "
            "grid with ckpt.preprocess.geometry(volume).inverse(map) and pass volume and that map to it; "
            "ckpt.preprocess.write_map(map, volume, 'map.nii.gz') writes it for 3D Slicer or ITK-SNAP. "
            "For a batch of 2D maps pass one: exp.maps[i].")


def _class_name(class_names: Sequence[str] | None, k: int) -> str:
    return class_names[k] if class_names is not None and 0 <= k < len(class_names) else f"class {k}"


def row_label(explanation, i: int, class_names: Sequence[str] | None = None, distances=None) -> str:
    """``image id · true class · predicted class and its probability`` of image ``i`` (never patient ids), and
    its domain flag when ``distances`` (:func:`xaikit.domain.assess_domain` of the inputs) are given."""
    parts = [str(explanation.image_ids[i])] if explanation.image_ids else [f"image {i}"]
    if explanation.labels is not None:
        parts.append(f"true {_class_name(class_names, int(explanation.labels[i]))}")
    pred = int(explanation.preds[i])
    if pred >= 0 and explanation.probs.ndim == 2 and pred < explanation.probs.shape[1]:
        parts.append(f"pred {_class_name(class_names, pred)} {float(explanation.probs[i, pred]):.2f}")
    else:  # segmentation / detection targets: no class prediction, name what was explained
        parts.append(f"{explanation.target_policy} {_class_name(class_names, int(explanation.targets[i]))}")
    if distances is not None:  # a line of its own: a method grid's row is 180 px tall, its label must fit
        parts.append(domain_badge(float(distances[i])))
    return "<br>".join(parts)


def _column_sign(sign: str, maps) -> str:
    return resolve_sign(sign, _numpy(maps)) if sign == "auto" else resolve_sign(sign)


def _colorbars(signs: Sequence[str]) -> dict[str, dict]:
    """One colour bar per sign mode shown, stacked on the right without overlapping."""
    kinds = list(dict.fromkeys(signs))
    n = len(kinds)
    return {k: {"y": 1 - (j + 0.5) / n, "len": 0.9 / n, "yanchor": "middle"} for j, k in enumerate(kinds)}


def method_grid(images, explanations: Mapping[str, object], *, indices: Sequence[int] | None = None,
                alpha: float = 0.7, threshold_pct: float = 0.0, sign: str = "auto", clip_pct: float | None = 99.5,
                cell: int = 180, class_names: Sequence[str] | None = None, domain_distances=None) -> go.Figure:
    """Rows = images, columns = methods; each cell an overlay. ``explanations`` maps label -> Explanation.

    Each row is labelled with the image id, true class (when the explanation has labels) and the predicted
    class with its probability (and the domain flag with ``domain_distances``, :func:`xaikit.domain.assess_domain`);
    with ``sign="auto"`` each method gets a one-sided scale when all its maps are non-negative (Grad-CAM) and a
    diverging one otherwise. Maps are sent at the cell's display resolution.
    """
    labels = list(explanations)
    if not labels:
        raise ArgumentError("method_grid needs at least one explanation.")
    first = explanations[labels[0]]
    n = len(first.maps)
    rows = list(range(n)) if indices is None else list(indices)
    signs = {label: _column_sign(sign, explanations[label].maps) for label in labels}
    bars = _colorbars(list(signs.values()))
    titles = [_wrap(label) for label in labels]
    fig = make_subplots(rows=len(rows), cols=len(labels), column_titles=titles, horizontal_spacing=0.004,
                        vertical_spacing=0.01)
    shown: set[str] = set()
    for i, r in enumerate(rows):
        for j, label in enumerate(labels):
            s = signs[label]
            traces = overlay_traces(_image(images, r), explanations[label].maps[r], alpha=alpha,
                                    threshold_pct=threshold_pct, sign=s, clip_pct=clip_pct,
                                    show_scale=s not in shown, max_side=cell, colorbar=bars[s], compact=True)
            shown.add(s)
            for t in traces:
                fig.add_trace(t, row=i + 1, col=j + 1)
        fig.update_yaxes(title_text=row_label(first, r, class_names, domain_distances), title_font_size=11,
                         row=i + 1, col=1)
    fig.update_annotations(font_size=11)
    # the right margin holds the colour bars' tick labels and titles ("relevance") in full
    fig.update_layout(width=cell * len(labels) + 290, height=cell * len(rows) + 80,
                      margin={"l": 130, "r": 70, "t": 60, "b": 10})
    _square(fig)
    return fig


def _wrap(label: str, width: int = 14) -> str:
    """A long method name on two lines (at an underscore) so neighbouring column titles never overlap."""
    if len(label) <= width or "_" not in label:
        return label
    cut = min((i for i, ch in enumerate(label) if ch == "_"), key=lambda i: abs(i - len(label) / 2))
    return label[:cut] + "<br>" + label[cut + 1:]


def gallery(images, explanation, *, n_cols: int = 4, max_images: int = 16, alpha: float = 0.7,
            threshold_pct: float = 0.0, sign: str = "auto", clip_pct: float | None = 99.5,
            class_names: Sequence[str] | None = None, cell: int = 200, domain_distances=None) -> go.Figure:
    """One method over many images; each title gives the image id, true and predicted class with its
    probability (and the domain flag with ``domain_distances``), and the explained class (never patient
    identifiers)."""
    n = min(len(explanation.maps), max_images)
    n_rows = max(1, -(-n // n_cols))
    titles = [row_label(explanation, i, class_names, domain_distances).replace("<br>", " · ", 1)
              + f"<br>explains {_class_name(class_names, int(explanation.targets[i]))}" for i in range(n)]
    s = _column_sign(sign, explanation.maps[:n])
    title_px = 54  # three lines of 11 px titles above every row
    height = (cell + title_px) * n_rows + 60
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=min(0.3, title_px / height) if n_rows > 1 else 0.0)
    for i in range(n):
        for t in overlay_traces(_image(images, i), explanation.maps[i], alpha=alpha, threshold_pct=threshold_pct,
                                sign=s, clip_pct=clip_pct, show_scale=(i == 0), max_side=cell, compact=True):
            fig.add_trace(t, row=i // n_cols + 1, col=i % n_cols + 1)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=explanation.method, width=(cell + 10) * n_cols + 90, height=height,
                      margin={"l": 10, "r": 10, "t": 110, "b": 10})
    _square(fig)
    return fig


def _image(images, i: int):
    return images[i]
