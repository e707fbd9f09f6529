"""VolumeExplorer: three-plane slice explorer of a volume and its saliency maps; callbacks only redraw.

Sliders pick the axial/coronal/sagittal slices (the crosshairs in every panel follow), window level and width,
map opacity, threshold and sign mode; a dropdown picks the map. The same controls drive a NiiVue viewer
(:class:`xaikit.widgets.niivue.VolumeViewer`: the three planes and a 3-D render with one crosshair, the region labels
in colour) above the Plotly planes. Every Plotly figure comes from
:func:`xaikit.viz.volume.three_plane_view`; :meth:`VolumeExplorer.figure_now` is the static fallback (a plain
Plotly figure, e.g. for a saved notebook or a report) and :func:`xaikit.viz.volume.mip_view` gives the
maximum-intensity projection of a map.
"""
from __future__ import annotations

from typing import Mapping

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from ..io.image import MedicalImage
from ..viz.saliency import SIGN_MODES
from ..viz.volume import _array, three_plane_view
from .niivue import VolumeViewer

__all__ = ["VolumeExplorer"]


class VolumeExplorer:
    """Slice sliders with crosshair sync, window/level, map opacity, threshold and sign over one volume.

    Parameters
    ----------
    volume : MedicalImage, array or tensor ``D x H x W``
        The grey volume (a MedicalImage brings window, spacing and orientation).
    maps : dict of str to array ``D x H x W``, optional
        Saliency maps on the volume's grid, by name (e.g. ``{m: exp.maps[0] for m, exp in explanations.items()}``).
    regions : RegionSet or (labels, names), optional
        Region labels on the volume's grid, shown in the 3-D viewer.
    affine, spacing : optional
        The volume's voxel-to-RAS matrix (default the MedicalImage's) or voxel size, for the 3-D viewer.
    viewer : bool
        Build the NiiVue 3-D viewer (``ipyniivue``), driven by the same controls. Show it in a cell of its own
        (``explorer.viewer``): ipyniivue 2.4 keeps one NiiVue per page and draws nothing when rendered together
        with other widgets in one output.

    Examples
    --------
    >>> explorer = VolumeExplorer(image, {"gradcam": exp.maps[0]})  # doctest: +SKIP
    >>> explorer  # doctest: +SKIP  (displays in Jupyter)
    """

    def __init__(self, volume, maps: Mapping[str, object] | None = None, *, alpha: float = 0.5,
                 threshold_pct: float = 0.0, sign: str = "signed", height: int = 340, regions=None, affine=None,
                 spacing=None, viewer: bool = True):
        self.volume, self.maps, self.height = volume, {k: _array(v, k) for k, v in (maps or {}).items()}, height
        self.affine = affine
        arr = _array(volume, "volume")
        d, h, w = arr.shape
        center, width = volume.window if isinstance(volume, MedicalImage) else (
            float(arr.mean()), float(arr.max() - arr.min()) or 1.0)
        span = float(arr.max() - arr.min()) or 1.0
        self.d = widgets.IntSlider(d // 2, 0, d - 1, description="axial")
        self.h = widgets.IntSlider(h // 2, 0, h - 1, description="coronal")
        self.w = widgets.IntSlider(w // 2, 0, w - 1, description="sagittal")
        self.level = widgets.FloatSlider(value=center, min=float(arr.min()), max=float(arr.max()), step=span / 200,
                                         description="level")
        self.width = widgets.FloatSlider(value=width, min=span / 100, max=2 * span, step=span / 200,
                                         description="width")
        names = list(self.maps) or ["(none)"]
        self.method = widgets.Dropdown(options=names, value=names[0], description="map")
        self.alpha = widgets.FloatSlider(value=alpha, min=0, max=1, step=0.05, description="opacity")
        self.threshold = widgets.FloatSlider(value=threshold_pct, min=0, max=99, step=1, description="threshold %")
        self.sign = widgets.ToggleButtons(options=list(SIGN_MODES), value=sign, description="sign")
        self.figure = go.FigureWidget(self.figure_now())
        for control in (self.d, self.h, self.w, self.level, self.width, self.method, self.alpha, self.threshold,
                        self.sign):
            control.observe(self._redraw, names="value")
        self.viewer = VolumeViewer(volume, self.maps.get(self.method.value), regions=regions, affine=affine,
                                   spacing=spacing, alpha=alpha, threshold_pct=threshold_pct, sign=sign,
                                   height=height + 80) if viewer else None
        if self.viewer is not None:
            self.viewer.set_point(self.point)
            self._wire_viewer()
        self.controls = widgets.VBox([widgets.HBox([self.d, self.h, self.w]), widgets.HBox([self.level, self.width]),
                                      widgets.HBox([self.method, self.alpha, self.threshold]), self.sign])
        self.widget = widgets.VBox([self.controls, self.figure])

    def _wire_viewer(self) -> None:
        """The explorer's controls drive the 3-D viewer too (slices move its crosshair)."""
        v = self.viewer
        for control in (self.d, self.h, self.w):
            control.observe(lambda _: v.set_point(self.point), names="value")
        self.alpha.observe(lambda c: v.set_opacity(c["new"]), names="value")
        self.threshold.observe(lambda c: v.set_threshold(c["new"]), names="value")
        self.sign.observe(lambda c: v.set_sign(c["new"]), names="value")
        self.method.observe(lambda c: v.set_map(self.maps[c["new"]]) if c["new"] in self.maps else None,
                            names="value")

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)  # the 3-D viewer is shown on its own (``explorer.viewer``): see the class docstring

    def figure_now(self) -> go.Figure:
        """The figure for the current control values (a plain Plotly figure: the static fallback)."""
        m = self.maps.get(self.method.value)
        return three_plane_view(self.volume, m, point=(self.d.value, self.h.value, self.w.value),
                                  window=(self.level.value, self.width.value), alpha=self.alpha.value,
                                  threshold_pct=self.threshold.value, sign=self.sign.value, affine=self.affine,
                                  height=self.height)

    def _redraw(self, change=None) -> None:
        fresh = self.figure_now()
        with self.figure.batch_update():
            for old, new in zip(self.figure.data, fresh.data):
                old.z, old.opacity, old.colorscale, old.zmin = new.z, new.opacity, new.colorscale, new.zmin
            self.figure.layout.shapes = fresh.layout.shapes
            self.figure.layout.annotations = fresh.layout.annotations

    @property
    def point(self) -> tuple[int, int, int]:
        return (self.d.value, self.h.value, self.w.value)

    def __repr__(self) -> str:
        return f"VolumeExplorer(shape={np.shape(_array(self.volume, 'volume'))}, maps={list(self.maps)})"
