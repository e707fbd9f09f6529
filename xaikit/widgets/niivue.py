"""VolumeViewer: a scan, its saliency map and its region labels in NiiVue (ipyniivue), three planes and a 3-D render.

NiiVue (https://niivue.com) is the WebGL2 viewer of the neuroimaging field; ``ipyniivue`` is its anywidget for
Jupyter. NiiVue reads volumes as NIfTI files: :func:`xaikit.io.nifti.nifti_bytes` builds them in memory from the
kit's ``(D, H, W)`` arrays and their affine (nothing is written to disk). The three planes and the 3-D render of
NiiVue's multiplanar view share one crosshair, so they stay in sync; :meth:`VolumeViewer.set_point` moves it from
Python (the :class:`~xaikit.widgets.volume.VolumeExplorer` sliders do). The map is scaled as everywhere in the kit
(:func:`xaikit.viz.saliency.display_map`: sign mode, percentile clipping) and shown above a threshold percentile of
its magnitude, with an opacity. Widgets leave no picture in a saved notebook or an HTML export: show
:func:`xaikit.viz.volume.three_plane_view` (``VolumeExplorer.figure_now()``) after it as the static copy.

Examples
--------
>>> viewer = VolumeViewer(image, exp.maps[0], regions=regions, sign="positive")  # doctest: +SKIP
>>> viewer  # doctest: +SKIP  (displays in Jupyter)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ArgumentError
from ..io.image import MedicalImage
from ..io.nifti import dhw_to_ras, nifti_bytes
from ..viz.saliency import SIGN_MODES, display_map
from ..viz.volume import _array

__all__ = ["VolumeViewer", "NIIVUE_COLORMAPS", "MIN_SHOWN", "volume_affine", "label_volume", "crosshair_fraction"]

#: NiiVue colour maps per sign mode: (positive values, negative values or "" for none).
NIIVUE_COLORMAPS = {"signed": ("warm", "winter"), "positive": ("warm", ""), "absolute": ("viridis", "")}

#: Smallest |shown map| value NiiVue draws (the map is scaled to [-1, 1]): below it the scan shows through.
MIN_SHOWN = 0.05

# Region label colours (RGB), label 1 upwards; label 0 (background) is transparent.
_LABEL_RGB = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
              (204, 121, 167), (153, 153, 153), (128, 0, 128), (0, 128, 128)]


def volume_affine(volume, affine=None, spacing: Sequence[float] | None = None) -> np.ndarray:
    """The ``(d, h, w, 1)`` -> RAS mm matrix of a volume: ``affine``, else the MedicalImage's, else one from
    ``spacing`` (or 1 mm) with :func:`xaikit.io.nifti.dhw_to_ras`'s axis convention."""
    if affine is None and isinstance(volume, MedicalImage) and volume.affine is not None:
        affine = volume.affine
    if affine is None:
        spacing = spacing if spacing is not None else getattr(volume, "spacing", None) or (1.0, 1.0, 1.0)
        return dhw_to_ras(tuple(float(s) for s in spacing))
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ArgumentError(f"affine must be a 4x4 matrix; got shape {affine.shape}.")
    return affine


def label_volume(regions, shape: tuple[int, int, int]) -> tuple[np.ndarray, list[str]]:
    """One ``uint8`` label volume (0 = none, ``k + 1`` = region ``k``; the first region wins where they overlap)
    and the region names, from a shared 3-D :class:`~xaikit.regions.RegionSet` or a ``(labels, names)`` pair."""
    if isinstance(regions, tuple) and len(regions) == 2:
        labels, names = np.asarray(regions[0]), list(regions[1])
        if labels.shape != tuple(shape):
            raise ArgumentError(f"region labels of shape {labels.shape} differ from the volume's {tuple(shape)}.")
        return labels.astype(np.uint8), names
    masks, names = np.asarray(getattr(regions, "masks", None)), list(getattr(regions, "names", []))
    if masks.ndim != 4 or masks.shape[1:] != tuple(shape):
        raise ArgumentError(f"regions must be one shared 3-D RegionSet (R x D x H x W) on the volume's grid "
                            f"{tuple(shape)}; got masks of shape {masks.shape}. Pick one volume's regions first.")
    if len(names) > 255:
        raise ArgumentError(f"{len(names)} regions do not fit one uint8 label volume (at most 255).")
    labels = np.zeros(shape, dtype=np.uint8)
    for k in range(len(names) - 1, -1, -1):  # backwards, so the first region is drawn last and wins
        labels[masks[k].astype(bool)] = k + 1
    return labels, names


def crosshair_fraction(point: Sequence[int], shape: Sequence[int], affine: np.ndarray) -> list[float]:
    """NiiVue's crosshair position (fractions of the RAS-reoriented volume) of voxel ``point = (d, h, w)``.

    NiiVue reorients every volume to the closest RAS axes (nibabel's ``io_orientation``) and places the crosshair
    at voxel centres: fraction ``(i + 0.5) / n`` along each RAS axis, counted from the flipped end where an axis
    points the other way.
    """
    ornt = __import__("nibabel").orientations.io_orientation(np.asarray(affine))
    frac = [0.5, 0.5, 0.5]
    for axis, (out, flip) in enumerate(ornt):
        n, i = int(shape[axis]), int(point[axis])
        frac[int(out)] = ((i if flip > 0 else n - 1 - i) + 0.5) / n
    return frac


class VolumeViewer:
    """NiiVue's multiplanar view (three planes + 3-D render) of a scan, a saliency map and region labels.

    Parameters
    ----------
    volume : MedicalImage, array or tensor ``D x H x W``
        The scan (a MedicalImage brings its window and affine).
    saliency : array or tensor ``D x H x W``, optional
        The map on the scan's grid.
    regions : RegionSet or (labels, names), optional
        Region labels on the scan's grid, drawn in colour under the map.
    affine, spacing : optional
        Voxel-to-RAS matrix (default the MedicalImage's) or voxel size in mm when there is none.
    alpha, threshold_pct, sign, clip_pct
        Map opacity, threshold percentile of |map|, sign mode (``signed``, ``positive``, ``absolute``), clipping.
    height : int
        Height of the viewer in pixels.

    Examples
    --------
    >>> viewer = VolumeViewer(np.random.rand(8, 10, 12), np.random.randn(8, 10, 12))  # doctest: +SKIP
    >>> [v.name for v in viewer.nv.volumes]  # doctest: +SKIP
    ['scan.nii', 'map.nii']
    """

    def __init__(self, volume, saliency=None, *, regions=None, affine=None, spacing=None, window=None,
                 alpha: float = 0.5, threshold_pct: float = 0.0, sign: str = "signed", clip_pct: float = 99.5,
                 region_opacity: float = 0.35, height: int = 420):
        from ipyniivue import NiiVue, ShowRender, SliceType

        self.array = _array(volume, "volume")
        self.affine = volume_affine(volume, affine, spacing)
        self.alpha, self.threshold_pct, self.sign, self.clip_pct = float(alpha), float(threshold_pct), sign, clip_pct
        self.region_names: list[str] = []
        self.nv = NiiVue(height=height, slice_type=SliceType.MULTIPLANAR, multiplanar_show_render=ShowRender.ALWAYS,
                         is_colorbar=True, show_3d_crosshair=True, crosshair_color=(0.2, 1.0, 0.2, 1.0))
        self._scan = self._volume(self.array, "scan.nii", colormap="gray", window=self._window(volume, window))
        self._labels = None if regions is None else self._label_volume(regions, region_opacity)
        self._saliency = None if saliency is None else _array(saliency, "saliency")
        if self._saliency is not None and self._saliency.shape != self.array.shape:
            raise ArgumentError(f"saliency map shape {self._saliency.shape} differs from the volume's "
                                f"{self.array.shape}.")
        self._load()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.nv)

    # ------------------------------------------------------------------ building volumes
    def _window(self, volume, window) -> tuple[float, float]:
        if window is None and isinstance(volume, MedicalImage):
            window = volume.window
        if window is None:
            return float(self.array.min()), float(self.array.max())
        return float(window[0] - window[1] / 2), float(window[0] + window[1] / 2)

    def _volume(self, array, name: str, *, colormap: str, window=None, dtype=np.float32, **traits):
        from ipyniivue import Volume

        lo, hi = window if window is not None else (None, None)
        return Volume(data=nifti_bytes(array, self.affine, dtype=dtype), name=name, colormap=colormap,
                      cal_min=lo, cal_max=hi, **traits)

    def _label_volume(self, regions, opacity: float):
        labels, self.region_names = label_volume(regions, self.array.shape)
        vol = self._volume(labels, "regions.nii", colormap="gray", dtype=np.uint8, opacity=float(opacity),
                           colorbar_visible=False)
        rgb = [(0, 0, 0)] + [_LABEL_RGB[k % len(_LABEL_RGB)] for k in range(len(self.region_names))]
        vol.set_colormap_label({"R": [c[0] for c in rgb], "G": [c[1] for c in rgb], "B": [c[2] for c in rgb],
                                "A": [0] + [255] * len(self.region_names), "I": list(range(len(rgb))),
                                "labels": ["none"] + self.region_names})
        return vol

    def overlay_values(self) -> np.ndarray:
        """The map as shown: :func:`~xaikit.viz.saliency.display_map` over the whole volume, in [-1, 1] or [0, 1]."""
        m = self._saliency
        return display_map(m.reshape(m.shape[0], -1), self.sign, self.clip_pct).reshape(m.shape)

    def threshold_value(self) -> float:
        """NiiVue's ``cal_min`` of the map: the ``threshold_pct`` percentile of |shown map|, at least
        :data:`MIN_SHOWN` (NiiVue draws every value above ``cal_min`` in full colour, so the faint tails that the
        kit's Plotly overlays fade out would otherwise cover the scan)."""
        values = np.abs(self.overlay_values())
        return max(float(np.percentile(values, self.threshold_pct)) if self.threshold_pct > 0 else 0.0, MIN_SHOWN)

    def _map_volume(self):
        positive, negative = NIIVUE_COLORMAPS[self.sign]
        from ipyniivue import ColormapType

        # colours run from 0 (not from the threshold) to 1 as in the kit's Plotly figures; below the threshold: none
        return self._volume(self.overlay_values(), "map.nii", colormap=positive, colormap_negative=negative,
                            window=(self.threshold_value(), 1.0), opacity=self.alpha,
                            colormap_type=ColormapType.ZERO_TO_MAX_TRANSPARENT_BELOW_MIN)

    def _load(self) -> None:
        extra = [self._map_volume()] if self._saliency is not None else []
        self.nv.volumes = [self._scan] + ([self._labels] if self._labels is not None else []) + extra

    # ------------------------------------------------------------------ controls
    @property
    def map_volume(self):
        """The NiiVue volume of the map (None without a map)."""
        return self.nv.volumes[-1] if self._saliency is not None else None

    def set_map(self, saliency) -> None:
        """Show another map (same grid)."""
        m = _array(saliency, "saliency")
        if m.shape != self.array.shape:
            raise ArgumentError(f"saliency map shape {m.shape} differs from the volume's {self.array.shape}.")
        self._saliency = m
        self._load()

    def set_sign(self, sign: str) -> None:
        """Switch the sign mode (the overlay is rebuilt: its values change)."""
        if sign not in SIGN_MODES:
            raise ArgumentError(f"sign={sign!r} is not known; use one of {sorted(SIGN_MODES)}.")
        self.sign = sign
        if self._saliency is not None:
            self._load()

    def set_opacity(self, alpha: float) -> None:
        self.alpha = float(alpha)
        if self.map_volume is not None:
            self.map_volume.opacity = self.alpha

    def set_threshold(self, threshold_pct: float) -> None:
        self.threshold_pct = float(threshold_pct)
        if self.map_volume is not None:
            self.map_volume.cal_min = self.threshold_value()

    def set_point(self, point: Sequence[int]) -> None:
        """Move the shared crosshair (all planes follow) to voxel ``(d, h, w)``."""
        point = tuple(int(p) for p in point)
        if len(point) != 3 or any(not 0 <= p < s for p, s in zip(point, self.array.shape)):
            raise ArgumentError(f"point={point!r} must be (d, h, w) inside the volume {self.array.shape}.")
        self.nv.scene.crosshair_pos = crosshair_fraction(point, self.array.shape, self.affine)

    def __repr__(self) -> str:
        return (f"VolumeViewer(shape={self.array.shape}, map={self._saliency is not None}, "
                f"regions={self.region_names})")
