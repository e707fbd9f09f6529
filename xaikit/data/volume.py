"""Volume preprocessing: one serializable object turning a CT/MRI volume into the ``1 x D x H x W`` model input.

:class:`VolumePreprocess` is the 3D sibling of :class:`~xaikit.data.Preprocess` and is stored in checkpoints
the same way (its dict carries ``"kind": "volume"``). Order of operations (fixed):

1. intensity, on the source grid: ``"window"`` maps an HU window ``(center, width)`` to ``[0, 1]`` (CT),
   ``"percentile"`` maps the given percentiles of the whole volume to ``[0, 1]`` (MRI), ``"none"`` keeps values;
2. geometry (:class:`VolumeGeometry`), one resampling for resample + crop/pad together: the volume is
   resampled along its own array axes to ``spacing`` (mm) and cropped/padded symmetrically to ``shape``.
   Voxel 0 of the resampled grid sits on voxel 0 of the source grid, so output voxel ``o`` samples source
   voxel ``s = zoom * (o + offset)`` and the output affine is ``source_affine @ [[diag(zoom), zoom * offset],
   [0, 1]]``: world coordinates stay exact for any source affine, oblique ones included. Images are
   interpolated trilinearly after a Gaussian anti-aliasing filter when downsampling (sigma ``(zoom - 1) / 2``
   per axis, skimage's rule), label maps and masks by nearest neighbour; padding is the intensity minimum.

:meth:`VolumeGeometry.inverse` takes a map on the model grid back onto the source grid, and
:meth:`VolumePreprocess.write_map` writes it as NIfTI with the *source* affine, so it opens aligned over the
original scan in 3D Slicer, ITK-SNAP or FSLeyes.

Resampling is written on :func:`scipy.ndimage.affine_transform` rather than taken from MONAI (``Spacing``,
``ResizeWithPadOrCrop``) or TorchIO (``Resample``, ``CropOrPad``). Both install here without changing torch,
but they took 3-5 minutes to install on a busy 2-core machine (MONAI + TorchIO 188 s, MONAI alone 280 s
without the pip cache; TorchIO pulls SimpleITK, ~50 MB), and both bring their own
image containers and orientation conventions (MetaTensor / ScalarImage in their own RAS layout) for what is one
scipy call plus the 4 x 4 bookkeeping below; the tests check that bookkeeping against world coordinates.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from scipy import ndimage

from ..errors import ArgumentError
from ..io.image import MedicalImage
from ..io.nifti import dhw_to_ras
from ..io.volume import write_map_nifti
from .preprocess import Preprocess, scale_intensity

__all__ = ["VolumePreprocess", "VolumeGeometry", "VOLUME_NORMALIZATIONS", "preprocess_from_dict"]

VOLUME_NORMALIZATIONS = ("window", "percentile", "none")
_TOL = 1e-3  # relative tolerance when comparing an affine with the stated spacing / checking orthogonality


@dataclass(frozen=True)
class VolumeGeometry:
    """How a source volume maps onto the model grid: ``source = zoom * (output + offset)`` (voxel indices).

    Attributes
    ----------
    in_shape, out_shape : tuple of int
        ``(D, H, W)`` of the source volume and of the model input.
    zoom : tuple of float
        Output spacing over source spacing per axis (``> 1``: downsampling).
    offset : tuple of int
        Crop (``> 0``) or pad (``< 0``) in resampled voxels before the first output voxel.
    in_affine : numpy.ndarray
        4 x 4 voxel ``(d, h, w)`` to world (RAS mm) matrix of the source.
    """

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    zoom: tuple[float, float, float]
    offset: tuple[int, int, int]
    in_affine: np.ndarray = field(repr=False, compare=False)

    @property
    def out_affine(self) -> np.ndarray:
        """4 x 4 voxel-to-world matrix of the model grid (the source affine kept in step)."""
        step = np.eye(4)
        step[:3, :3] = np.diag(self.zoom)
        step[:3, 3] = np.asarray(self.zoom) * np.asarray(self.offset)
        return self.in_affine @ step

    @property
    def out_spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.out_affine[:3, :3], axis=0))

    def image(self, volume: np.ndarray, pad_value: float = 0.0) -> np.ndarray:
        """Resample a float source volume onto the model grid (anti-aliased trilinear)."""
        self._check(volume, "volume")
        sigma = [max(0.0, (z - 1.0) / 2.0) for z in self.zoom]
        src = volume.astype(np.float32, copy=False)
        if any(s > 0 for s in sigma):
            src = ndimage.gaussian_filter(src, sigma, mode="nearest")
        return self._sample(src, order=1, cval=pad_value).astype(np.float32)

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """Resample an integer label map (or a boolean mask) by nearest neighbour, padding with 0."""
        self._check(labels, "label map")
        arr = np.asarray(labels)
        out = self._sample(arr.astype(np.int32) if arr.dtype == bool else arr, order=0, cval=0)
        return out.astype(arr.dtype)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Map a volume on the model grid (e.g. a saliency map) back onto the source grid (trilinear).

        Source voxels outside the model's field of view (cropped away) get 0.
        """
        values = np.asarray(values, dtype=np.float32)
        if values.shape != self.out_shape:
            raise ArgumentError(f"VolumeGeometry.inverse expects a volume of shape {self.out_shape} (the model "
                                f"grid); got {values.shape}.")
        inv = 1.0 / np.asarray(self.zoom)
        return ndimage.affine_transform(values, inv, offset=-np.asarray(self.offset, float), output_shape=self.in_shape,
                                        order=1, mode="constant", cval=0.0).astype(np.float32)

    def _sample(self, src: np.ndarray, order: int, cval: float) -> np.ndarray:
        zoom = np.asarray(self.zoom)
        return ndimage.affine_transform(src, zoom, offset=zoom * np.asarray(self.offset), output_shape=self.out_shape,
                                        order=order, mode="constant", cval=cval)

    def _check(self, volume: np.ndarray, what: str) -> None:
        if np.shape(volume) != self.in_shape:
            raise ArgumentError(f"this VolumeGeometry is for source volumes of shape {self.in_shape}; the {what} "
                                f"has shape {np.shape(volume)}. Label maps and masks must be on the image's grid.")


@dataclass(frozen=True, eq=False)
class VolumePreprocess:
    """Volume-to-tensor preprocessing, serializable and identical for training, evaluation and explanation.

    Parameters
    ----------
    shape : int or (int, int, int)
        Output ``(D, H, W)`` in voxels (an int means a cube).
    spacing : float or (float, float, float), optional
        Target voxel size in mm along ``(D, H, W)``; ``None`` keeps the source spacing (then a volume whose
        voxels are more than ``max_anisotropy`` times longer along one axis is refused).
    normalize : {"window", "percentile", "none"}
        ``"window"``: HU window ``window`` (else the image's default window) to ``[0, 1]``;
        ``"percentile"``: ``percentiles`` of the volume to ``[0, 1]``; ``"none"``: values unchanged.
    window : (float, float), optional
        ``(center, width)`` for ``"window"``, e.g. ``(-600, 1500)`` for lung CT.
    percentiles : (float, float)
        Low and high percentiles for ``"percentile"``.
    max_anisotropy : float
        Largest accepted ratio of the longest to the shortest voxel side when ``spacing`` is ``None``.

    Examples
    --------
    >>> from xaikit.phantom import draw_volume
    >>> vol = draw_volume(0, shape=(24, 32, 32))
    >>> pre = VolumePreprocess(shape=16, spacing=12.0, normalize="window", window=(-600, 1500))
    >>> x, masks = pre(vol.as_image(), {"lesion": vol.labels == 6})
    >>> tuple(x.shape), tuple(masks["lesion"].shape)
    ((1, 16, 16, 16), (16, 16, 16))
    >>> VolumePreprocess.from_dict(pre.to_dict()) == pre
    True
    """

    shape: int | tuple[int, int, int] = 48
    spacing: float | tuple[float, float, float] | None = None
    normalize: str = "window"
    window: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    max_anisotropy: float = 3.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalize the fields once, here
        set_(self, "shape", _triple(self.shape, "shape", int))
        set_(self, "spacing", None if self.spacing is None else _triple(self.spacing, "spacing", float))
        if self.normalize not in VOLUME_NORMALIZATIONS:
            raise ArgumentError(f"VolumePreprocess(normalize={self.normalize!r}): must be one of "
                                f"{list(VOLUME_NORMALIZATIONS)}.")
        if self.window is not None:
            center, width = (float(v) for v in self.window)
            if not width > 0:
                raise ArgumentError(f"VolumePreprocess(window={self.window!r}): the width must be positive.")
            set_(self, "window", (center, width))
        lo, hi = (float(v) for v in self.percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            raise ArgumentError(f"VolumePreprocess(percentiles={self.percentiles!r}): need 0 <= low < high <= 100.")
        set_(self, "percentiles", (lo, hi))
        if not float(self.max_anisotropy) >= 1.0:
            raise ArgumentError(f"VolumePreprocess(max_anisotropy={self.max_anisotropy!r}): must be >= 1.")
        set_(self, "max_anisotropy", float(self.max_anisotropy))

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-able plain types, with ``"kind": "volume"``."""
        return {"kind": "volume", "shape": list(self.shape),
                "spacing": None if self.spacing is None else list(self.spacing), "normalize": self.normalize,
                "window": None if self.window is None else list(self.window),
                "percentiles": list(self.percentiles), "max_anisotropy": self.max_anisotropy}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VolumePreprocess:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error."""
        d = dict(d)
        if d.pop("kind", "volume") != "volume":
            raise ArgumentError(f"VolumePreprocess.from_dict got a dict of kind {d.get('kind')!r}, not 'volume'.")
        known = {"shape", "spacing", "normalize", "window", "percentiles", "max_anisotropy"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArgumentError(f"VolumePreprocess.from_dict: unknown keys {unknown}; "
                                f"expected some of {sorted(known)}.")
        return cls(**d)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VolumePreprocess):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    # ------------------------------------------------------------------ transform
    def geometry(self, image: MedicalImage | np.ndarray) -> VolumeGeometry:
        """The :class:`VolumeGeometry` this preprocessing applies to ``image``."""
        array, spacing, affine, name = _source(image)
        zoom = (1.0, 1.0, 1.0) if self.spacing is None else tuple(t / s for t, s in zip(self.spacing, spacing))
        if self.spacing is None and max(spacing) > self.max_anisotropy * min(spacing):
            raise ArgumentError(
                f"{name}: voxels of {spacing} mm are more than {self.max_anisotropy:g}x longer along one axis; "
                "a 3D model would see a squashed volume. Pass VolumePreprocess(spacing=...) to resample to a "
                "(near) isotropic grid, or raise max_anisotropy if this is intended.")
        in_shape = tuple(int(s) for s in array.shape)
        resampled = [int(np.floor((n - 1) / z + 1e-9)) + 1 for n, z in zip(in_shape, zoom)]
        offset = tuple((r - o) // 2 for r, o in zip(resampled, self.shape))
        return VolumeGeometry(in_shape, self.shape, tuple(float(z) for z in zoom), offset, affine)

    def __call__(self, image: MedicalImage | np.ndarray, masks: Mapping[str, Any] | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Preprocess one volume and its masks.

        Parameters
        ----------
        image : MedicalImage or numpy.ndarray
            A ``(D, H, W)`` volume (``(1, D, H, W)`` is squeezed). A plain array has 1 mm voxels.
        masks : dict of str to array, optional
            Boolean (or 0/1) volumes on the image's grid.

        Returns
        -------
        (torch.Tensor, dict of str to torch.BoolTensor)
            The float32 ``1 x D x H x W`` tensor and the masks on the model grid.
        """
        geo = self.geometry(image)
        array, _, _, _ = _source(image)
        scaled = self._intensity(array, image.window if isinstance(image, MedicalImage) else None)
        out = geo.image(scaled, pad_value=float(scaled.min()))
        tensor = torch.from_numpy(np.ascontiguousarray(out))[None]
        return tensor, self.apply_masks(masks, geo)

    def apply_masks(self, masks: Mapping[str, Any] | None, geometry: VolumeGeometry) -> dict[str, torch.Tensor]:
        """Send boolean masks on the source grid through ``geometry`` (nearest neighbour)."""
        if not masks:
            return {}
        out = {}
        for name, mask in masks.items():
            arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            out[name] = torch.from_numpy(geometry.labels(arr.astype(bool)))
        return out

    def write_map(self, values: Any, source: MedicalImage, path: str | os.PathLike, *,
                  dtype: Any = np.float32) -> Path:
        """Write a map on the model grid (``D x H x W``) as NIfTI on the *source* grid, with the source affine.

        The map is resampled back with :meth:`VolumeGeometry.inverse` (voxels outside the model's field of
        view are 0) and written by :func:`xaikit.io.volume.write_map_nifti` (the source NIfTI file's own voxel
        order, affine and qform/sform), so it overlays the original scan voxel for voxel in any NIfTI viewer;
        ``dtype=np.int16`` halves the file (scaled 16-bit values, see :func:`~xaikit.io.volume.write_map_nifti`).
        """

        if not isinstance(source, MedicalImage) or source.ndim != 3:
            raise ArgumentError("write_map: source must be the 3D MedicalImage the map was computed from "
                                f"(its geometry is written); got {type(source).__name__}.")
        arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        arr = arr[0] if arr.ndim == 4 and arr.shape[0] == 1 else arr
        return write_map_nifti(self.geometry(source).inverse(arr), source, path, dtype=dtype)

    def _intensity(self, volume: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
        return scale_intensity(volume, self.normalize, self.window or window, self.percentiles, "VolumePreprocess")


def preprocess_from_dict(d: Mapping[str, Any]):
    """A :class:`~xaikit.data.Preprocess` or :class:`VolumePreprocess` from its ``to_dict()`` (by ``"kind"``)."""
    if d.get("kind") == "volume":
        return VolumePreprocess.from_dict(d)

    return Preprocess.from_dict(d)


def _source(image: MedicalImage | np.ndarray) -> tuple[np.ndarray, tuple[float, ...], np.ndarray, str]:
    """A finite float32 ``(D, H, W)`` array, its spacing, its affine (checked against the spacing) and a name."""
    if isinstance(image, MedicalImage):
        array, spacing, affine = image.array, image.spacing, image.affine
        name = str(image.source) if image.source is not None else "the volume"
    else:
        array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        spacing, affine, name = (1.0, 1.0, 1.0), None, "the volume"
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ArgumentError(f"{name}: VolumePreprocess takes a 3D volume (D, H, W); got shape {array.shape}. "
                            "For a 4-D (time) series pick one frame first (read_volume(path, frame=k)); for a 2-D "
                            "image use Preprocess.")
    if min(array.shape) < 2:
        raise ArgumentError(f"{name}: the volume {array.shape} has an axis of length < 2.")
    array = array.astype(np.float32, copy=False)
    bad = array.size - int(np.isfinite(array).sum())
    if bad:
        raise ArgumentError(f"{name}: {bad} voxels are NaN/inf; clean the volume first (numpy.nan_to_num).")
    spacing = tuple(float(s) for s in spacing)
    affine = dhw_to_ras(spacing) if affine is None else np.asarray(affine, dtype=np.float64)
    _check_affine(affine, spacing, name)
    return array, spacing, affine, name


def _check_affine(affine: np.ndarray, spacing: tuple[float, ...], name: str) -> None:
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ArgumentError(f"{name}: the affine must be a finite 4 x 4 matrix; got {affine!r}.")
    cols = affine[:3, :3]
    norms = np.linalg.norm(cols, axis=0)
    if np.any(norms <= 0) or not np.allclose(norms, spacing, rtol=_TOL):
        raise ArgumentError(f"{name}: the affine's voxel sizes {tuple(np.round(norms, 4))} disagree with the "
                            f"spacing {spacing}; fix the header (or MedicalImage.spacing) before preprocessing.")
    unit = cols / norms
    gram = unit.T @ unit
    if np.abs(gram - np.eye(3)).max() > _TOL:
        raise ArgumentError(
            f"{name}: the affine is sheared (its voxel axes are not perpendicular; cosines "
            f"{np.round(gram[np.triu_indices(3, 1)], 4).tolist()}). Resample the scan to an orthogonal grid first "
            "(e.g. 3D Slicer 'Resample Scalar Volume' or nibabel.processing.resample_from_to).")


def _triple(value: Any, name: str, kind: type) -> tuple:
    values = (value,) * 3 if np.ndim(value) == 0 else tuple(value)
    ok = len(values) == 3 and all(not isinstance(v, bool) and np.isfinite(float(v)) and float(v) > 0 for v in values)
    if ok and kind is int:
        ok = all(int(v) == v for v in values)
    if not ok:
        raise ArgumentError(f"VolumePreprocess({name}={value!r}): give a positive {kind.__name__} or three of them "
                            "(D, H, W).")
    return tuple(kind(v) for v in values)
