"""Static exports of figures and images, so results show where widget state is not saved.

Plotly figures are written as HTML that loads one shared ``plotly.min.js`` (4.8 MB, written once per output tree:
the nearest folder at or above the figure's, inside the working directory, that already holds one; else beside the
figure; no network needed) and as PNG
when Kaleido can find a Chrome/Chromium (Kaleido >= 1 renders through one; Debian's ``chromium`` package works).
Images (arrays in [0, 1], or RGB) are written as PNG with Pillow, which needs no browser.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from .._util import atomic_path, atomic_write
from ..errors import ArgumentError, ImageWriteError

__all__ = ["png_export_available", "save_figure", "save_figures_png", "save_png", "colorize", "compact_figure",
           "report_plotlyjs", "CARTESIAN_TRACES"]


@functools.lru_cache(maxsize=1)
def png_export_available() -> bool:
    """Whether Plotly figures can be rendered to PNG here (Kaleido with a Chrome/Chromium browser)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    from shutil import which

    return any(which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome")) or bool(
        os.environ.get("BROWSER_PATH")
    )


def save_figure(
    fig: go.Figure, path: str | os.PathLike, *, html: bool = True, png: bool | None = None, scale: float = 1.0,
    plotlyjs: str | os.PathLike | None = None,
) -> list[Path]:
    """Write ``fig`` as ``<path>.html`` and ``<path>.png`` (when PNG export is available).

    Parameters
    ----------
    fig : plotly Figure
    path : path without suffix (a suffix, if given, is replaced)
    html : bool
        Write the HTML file (it loads ``plotly.min.js``, written once into the same folder).
    png : bool, optional
        ``True`` requires PNG (error if impossible), ``False`` skips it, ``None`` (default) writes it when possible.
    plotlyjs : path, optional
        The shared ``plotly.min.js`` the HTML loads (written there if missing), e.g. ``out_root / "plotly.min.js"``.
        Default: the nearest ``plotly.min.js`` at or above the figure's folder (inside the working directory),
        else one written beside the figure.

    Returns
    -------
    list of Path
        The files written.
    """
    stem = Path(path).with_suffix("")
    written = []
    if html:
        written.append(stem.with_suffix(".html"))
        js = _shared_plotlyjs(written[0], plotlyjs)
        with atomic_write(written[0], "w") as fh:
            # plotly.js (~4.8 MB) once per output tree, not inlined in (or copied beside) every figure's file
            src = Path(os.path.relpath(js, written[0].parent)).as_posix()
            fh.write(compact_figure(fig).to_html(include_plotlyjs=src, full_html=True))
    want_png = png_export_available() if png is None else png
    if want_png:
        if not png_export_available():
            raise ArgumentError(
                "png=True, but Plotly cannot export PNG here: Kaleido needs a Chrome/Chromium browser "
                "(e.g. `apt-get install chromium`)."
            )
        with atomic_path(stem.with_suffix(".png")) as tmp:
            fig.write_image(str(tmp), format="png", scale=scale, width=fig.layout.width or 900,
                            height=fig.layout.height or 500)
        written.append(stem.with_suffix(".png"))
    return written


def compact_figure(fig: go.Figure, *, max_width: int | None = None) -> go.Figure:
    """A copy of ``fig`` for a web page: heatmap/contour values as float32 arrays (NaN gaps kept), whole numbers
    in the smallest integer type, grey pictures as bytes, the toolbar on the right edge (not over the titles), at
    most ``max_width`` pixels wide (scaled down).

    Plotly writes numpy arrays as base64 typed arrays; JSON lists (with ``None`` for gaps, see
    :func:`xaikit.viz.image.plotly_z`) of float64 take about twice the bytes: a method grid drops from ~1.4 MB to
    ~0.6 MB. The figure drawn is the same (float32 keeps 7 significant digits).
    """
    out = go.Figure(fig)
    # the toolbar stands on the right edge instead of over the titles; a figure wider than the page is scaled down
    out.update_layout(modebar={"orientation": "v"})
    width, height = out.layout.width, out.layout.height
    if max_width and width and width > max_width:
        out.update_layout(width=max_width, height=round(height * max_width / width) if height else None)
    for trace in out.data:
        z = getattr(trace, "z", None) if trace.type in ("heatmap", "contour") else None
        if z is not None:
            trace.z = None  # Plotly keeps the old array when the new one compares equal (as int16 and float32 do)
            trace.z = _compact_values(z)
            if trace.type == "heatmap":
                _crop_blank(trace)
            if trace.z.dtype == np.float32:
                _grey_as_bytes(trace)
    return out


def _crop_blank(trace) -> None:
    """A heatmap that draws nothing at its edges (NaN gaps, or values at ``zmin`` where the colour scale starts
    transparent: masks, regions) cut to the box of what it draws, its origin moved to match (same picture)."""
    z = trace.z
    if z.ndim != 2 or trace.x is not None or trace.y is not None or trace.transpose:
        return
    blank = np.isnan(z) if z.dtype.kind == "f" else np.zeros(z.shape, bool)
    scale = trace.colorscale
    if trace.zmin is not None and scale and str(scale[0][1]).replace(" ", "").endswith(",0)"):
        blank |= z <= trace.zmin
    rows, cols = np.flatnonzero(~blank.all(axis=1)), np.flatnonzero(~blank.all(axis=0))
    if not rows.size or (rows.size == z.shape[0] and cols.size == z.shape[1]):
        return
    (r0, r1), (c0, c1) = (rows[0], rows[-1] + 1), (cols[0], cols[-1] + 1)
    dx, dy = trace.dx or 1, trace.dy or 1
    trace.update(z=None, x0=(trace.x0 or 0) + c0 * dx, y0=(trace.y0 or 0) + r0 * dy)
    trace.z = z[r0:r1, c0:c1]


#: Integer types Plotly sends as typed arrays, smallest first.
_INTS = (np.int8, np.uint8, np.int16, np.uint16, np.int32)


def _compact_values(z) -> np.ndarray:
    """``z`` in the fewest bytes that draw and hover the same: whole numbers (counts, ranks, DICOM pixel values,
    quantized maps) in the smallest integer type that holds them, anything else as float32 (NaN gaps kept)."""
    arr = np.asarray(z)
    if arr.dtype == object:  # JSON lists with None for gaps (xaikit.viz.image.plotly_z)
        arr = np.where(arr == None, np.nan, arr).astype(np.float64)  # noqa: E711 (element-wise)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    whole = np.issubdtype(arr.dtype, np.integer) or (
        arr.size > 0 and np.isfinite(arr).all() and bool((arr == np.round(arr)).all()))
    if whole and arr.size:
        lo, hi = arr.min(), arr.max()
        for t in _INTS:
            if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
                return arr.astype(t)
    return arr.astype(np.float32)


def _grey_as_bytes(trace) -> None:
    """A grey picture (a heatmap with no hover, no gaps and a fixed range) as 256 levels in one byte per pixel:
    the colours drawn are the same (a screen shows 256 grey levels), a quarter of the float32 bytes."""
    z, lo, hi = trace.z, trace.zmin, trace.zmax
    if trace.type != "heatmap" or trace.hoverinfo != "skip" or lo is None or hi is None or hi <= lo \
            or np.isnan(z).any():
        return
    trace.z = np.round(np.clip((z - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    trace.zmin, trace.zmax = 0, 255


def _shared_plotlyjs(html: Path, given: str | os.PathLike | None) -> Path:
    """The ``plotly.min.js`` that ``html`` loads: ``given``, else the nearest one at or above its folder inside the
    working directory, else a new one beside it; written once (works offline)."""
    from plotly.offline import get_plotlyjs

    folder = html.parent.resolve()
    js = Path(given).resolve() if given is not None else None
    if js is None:
        cwd = Path.cwd().resolve()
        above = [folder, *folder.parents] if folder.is_relative_to(cwd) else [folder]
        js = next((d / "plotly.min.js" for d in above if d.is_relative_to(cwd) and (d / "plotly.min.js").is_file()),
                  folder / "plotly.min.js")
    if js.suffix != ".js":
        raise ArgumentError(f"plotlyjs={str(given)!r} must name a .js file (e.g. out_dir / 'plotly.min.js').")
    if not js.exists():
        js.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(js, "w") as fh:
            fh.write(get_plotlyjs())
    return js


#: Trace types of plotly.js's cartesian partial bundle (``plotlyjs/README.md``), all a report of xaikit draws.
CARTESIAN_TRACES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour",
                              "image", "pie", "scatter", "scatterternary", "violin"})
_CARTESIAN_JS = Path(__file__).with_name("plotlyjs") / "plotly-cartesian.min.js.gz"


def report_plotlyjs(trace_types) -> tuple[str, str]:
    """``(file name, script)``: the plotly.js a page of these trace types needs, offline.

    plotly.js's cartesian bundle (``plotly-cartesian.min.js``, 1.5 MB, shipped with xaikit) when every type is in
    :data:`CARTESIAN_TRACES` and it is the release plotly.py bundles; else plotly.py's full bundle
    (``plotly.min.js``, 4.8 MB: 3-D, maps, WebGL and the rest).
    """
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    if set(trace_types) <= CARTESIAN_TRACES:
        version, script = _cartesian_bundle()
        if version and version == get_plotlyjs_version():
            return "plotly-cartesian.min.js", script
    return "plotly.min.js", get_plotlyjs()


def _cartesian_bundle() -> tuple[str, str]:
    """``(plotly.js release, script)`` of the shipped cartesian bundle; ``("", "")`` when it is missing."""
    import gzip
    import re

    if not _CARTESIAN_JS.is_file():
        return "", ""
    with gzip.open(_CARTESIAN_JS, "rt", encoding="utf-8") as fh:
        script = fh.read()
    version = re.search(r"plotly\.js \(cartesian - minified\) v(\S+)", script[:300])
    return (version.group(1) if version else ""), script


def save_figures_png(figs: list[go.Figure], paths: list[str | os.PathLike], *, scale: float = 1.0,
                     max_colors: int | None = None) -> list[Path]:
    """Render many figures to PNG in one browser session (much faster than one by one), atomically each;
    ``max_colors`` (e.g. 256) writes each in a palette of at most that many colours (a third to a half of the bytes,
    colours rounded)."""
    import contextlib

    import plotly.io as pio

    if len(figs) != len(paths):
        raise ArgumentError(f"save_figures_png got {len(figs)} figures for {len(paths)} paths.")
    if not figs:
        return []
    if not png_export_available():
        raise ArgumentError("Plotly cannot export PNG here: Kaleido needs a Chrome/Chromium browser "
                            "(e.g. `apt-get install chromium`).")
    finals = [Path(p).with_suffix(".png") for p in paths]
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(p)) for p in finals]
        # Kaleido ignores layout.width/height unless told: pass each figure's own size (default 900 x 500)
        widths = [f.layout.width or 900 for f in figs]
        heights = [f.layout.height or 500 for f in figs]
        pio.write_images(figs, [str(t) for t in tmps], format="png", scale=scale, width=widths, height=heights)
        for fig, tmp, final, w, h in zip(figs, tmps, finals, widths, heights):
            if not _written(tmp):  # Kaleido drops a figure whose render failed (e.g. timed out on a busy machine)
                _render_again(fig, tmp, final, scale, w, h)
            _optimize_png(tmp, max_colors)
    return finals


def _optimize_png(path: Path, max_colors: int | None = None) -> None:
    """Re-save Kaleido's PNG with Pillow's optimizer, without its alpha channel where every pixel is opaque (same
    pixels, ~20% fewer bytes); with ``max_colors``, in a palette of that many colours (Pillow's median cut: a plot
    has few colours; a method grid of 1370 x 800 px goes from 1.0 to 0.47 MB). Other files are left."""
    from PIL import Image

    with open(path, "rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            return
    with Image.open(path) as im:
        im.load()
        if im.mode == "RGBA" and im.getextrema()[3][0] == 255:
            im = im.convert("RGB")
        if max_colors is not None and im.mode == "RGB":
            im = im.quantize(max_colors, method=Image.Quantize.MEDIANCUT)
        im.save(path, format="PNG", optimize=True)


def _written(tmp: Path) -> bool:
    """The temporary holds a PNG (Kaleido deletes its file when a render fails; mkstemp left it empty)."""
    return tmp.is_file() and tmp.stat().st_size > 0


def _render_again(fig: go.Figure, tmp: Path, final: Path, scale: float, width: int, height: int) -> None:
    """One more try, on its own, for a figure the batch left out; a clear error if that fails too."""
    try:
        fig.write_image(str(tmp), format="png", scale=scale, width=width, height=height)
    except Exception as exc:  # Kaleido raises bare exceptions (browser errors, timeouts): name the figure
        raise ImageWriteError(f"{final}: Kaleido could not render this figure to PNG ({type(exc).__name__}: "
                              f"{exc}); no figure of this batch was written. Try again, or save it as "
                              "HTML (save_figure(..., png=False)).") from exc
    if not _written(tmp):
        raise ImageWriteError(f"{final}: Kaleido wrote no PNG for this figure (twice); no figure of this batch was "
                              "written. Try again, or save it as HTML (save_figure(..., png=False)).")


def colorize(values: np.ndarray, cmap: str = "gray", vmin: float | None = None,
             vmax: float | None = None) -> np.ndarray:
    """Map a 2D array to RGB uint8 through a Plotly colour scale (no matplotlib needed)."""
    from plotly.colors import get_colorscale, sample_colorscale

    arr = np.asarray(values, dtype=np.float64)
    lo = np.nanmin(arr) if vmin is None else vmin
    hi = np.nanmax(arr) if vmax is None else vmax
    t = np.clip((arr - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    lut_pos = np.linspace(0, 1, 256)
    lut = sample_colorscale(get_colorscale(cmap), list(lut_pos), colortype="tuple")
    lut = (np.asarray(lut) * 255).round().astype(np.uint8)  # tuples come in [0, 1]
    return lut[np.nan_to_num(t * 255).astype(np.int64)]


def save_png(image: np.ndarray, path: str | os.PathLike, *, max_side: int | None = None) -> Path:
    """Write a 2D array in [0, 1] (grey) or an (H, W, 3) uint8/float array (RGB) as a PNG, atomically.

    ``max_side`` shrinks a larger picture (Pillow's Lanczos filter, aspect ratio kept) to display resolution: a
    2000 x 2500 radiograph overlay takes ~3 MB at full size and ~0.3 MB at 448 px (the raw map stays in ``.npy``).
    """
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 2:
        pil = Image.fromarray((np.clip(np.nan_to_num(arr), 0, 1) * 255).round().astype(np.uint8), mode="L")
    elif arr.ndim == 3 and arr.shape[2] == 3:
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
        pil = Image.fromarray(arr, mode="RGB")
    else:
        raise ArgumentError(f"save_png needs (H, W) or (H, W, 3); got shape {arr.shape}.")
    if max_side is not None and max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    path = Path(path)
    with atomic_write(path) as fh:
        pil.save(fh, format="PNG", optimize=True)
    return path

