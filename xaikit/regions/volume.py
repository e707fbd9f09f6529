"""Volume regions: each label of a segmentation (e.g. a NIfTI label map) is a region, on the model's grid.

:func:`label_regions` reads a label map, checks it lies on the image's grid (same shape and affine: a label
map from another scan or resampled elsewhere would score the wrong voxels), sends it through the volume's
:class:`~xaikit.data.VolumePreprocess` geometry by nearest neighbour, and returns a 3-D
:class:`~xaikit.regions.RegionSet` with the model grid's spacing, so :func:`~xaikit.regions.region_scores`
reports region volumes in voxels and mm^3. :func:`stack_regions` joins per-volume sets into one per-image set.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import RegionError
from ..io.image import MedicalImage
from ..io.volume import read_volume
from .builders import _names_table
from .regionset import RegionSet, as_numpy

__all__ = ["label_regions", "stack_regions"]


def label_regions(labels: Any, names: Mapping[int, str] | Sequence[str] | str | os.PathLike, *, image: Any = None,
                  preprocess: Any = None, spacing: Sequence[float] | None = None) -> RegionSet:
    """A 3-D region set with one region per named label of a ``(D, H, W)`` label map.

    Parameters
    ----------
    labels
        Label map: a NIfTI path (or anything :func:`xaikit.io.read_volume` reads), a 3D
        :class:`~xaikit.io.MedicalImage`, or an integer array on the image's grid.
    names
        ``{value: name}``, a sequence (``names[i]`` is label ``i + 1``), or a CSV path with ``value,name``.
        Label 0 is background unless named.
    image : MedicalImage, optional
        The volume the labels belong to; its shape and affine must match the label map's (checked).
    preprocess : VolumePreprocess, optional
        Resample the labels onto the model grid of ``image`` (needs ``image``).
    spacing : sequence of float, optional
        Voxel size in mm when neither ``preprocess`` nor a label MedicalImage gives it.

    Examples
    --------
    >>> from xaikit.phantom import draw_volume
    >>> vol = draw_volume(0, shape=(16, 16, 16))
    >>> rs = label_regions(vol.labels, vol.names, spacing=vol.spacing)
    >>> rs.ndim, rs.shape, "lesion" in rs.names
    (3, (16, 16, 16), True)
    """
    lab, lab_spacing, lab_affine, where = _read_labels(labels)
    if image is not None:
        _check_aligned(lab, lab_affine, image, where)
    if preprocess is not None:
        if image is None:
            raise RegionError("label_regions(preprocess=...) needs image= (the volume whose grid the labels share).")
        geometry = preprocess.geometry(image)
        lab, spacing = geometry.labels(lab), geometry.out_spacing
    elif spacing is None:
        spacing = lab_spacing if lab_spacing is not None else getattr(image, "spacing", None)
    table = _names_table(names)
    present = set(np.unique(lab).astype(int).tolist()) - {0}
    unnamed = sorted(present - set(table))
    if unnamed:
        raise RegionError(f"{where}: label values {unnamed} have no name in the names table {table}; name every "
                          "label (or set them to 0) so no voxels are silently dropped.")
    return RegionSet(list(table.values()), np.stack([lab == v for v in table]), ndim=3, spacing=spacing)


def stack_regions(sets: Sequence[RegionSet]) -> RegionSet:
    """One per-image 3-D set ``N x R x D x H x W`` from shared per-volume sets with the same names and grid."""
    sets = list(sets)
    if not sets:
        raise RegionError("stack_regions needs at least one region set.")
    first = sets[0]
    for i, rs in enumerate(sets):
        if rs.names != first.names or rs.shape != first.shape or not rs.shared:
            raise RegionError(f"region set {i} has names {list(rs.names)} on {rs.shape}; all must be shared sets "
                              f"with names {list(first.names)} on {first.shape}.")
    return RegionSet(first.names, np.stack([rs.masks for rs in sets]), ndim=first.ndim, spacing=first.spacing)


def _read_labels(labels: Any) -> tuple[np.ndarray, tuple | None, np.ndarray | None, str]:
    where = "the label map"
    if isinstance(labels, (str, os.PathLike)):

        where = f"label map {os.fspath(labels)}"
        labels = read_volume(labels)
    spacing = affine = None
    if isinstance(labels, MedicalImage):
        spacing, affine = labels.spacing, labels.affine
        where = f"label map {labels.source}" if labels.source is not None else where
        labels = labels.array
    lab = as_numpy(labels)
    if lab.ndim != 3:
        raise RegionError(f"{where}: a volume label map is D x H x W; got shape {lab.shape}.")
    if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
        raise RegionError(f"{where}: holds non-integer values; a label map has one integer label per voxel.")
    return lab.astype(np.int64), spacing, affine, where


def _check_aligned(lab: np.ndarray, affine: np.ndarray | None, image: Any, where: str) -> None:
    name = getattr(image, "source", None) or "the image"
    if lab.shape != tuple(image.shape):
        raise RegionError(f"{where} has shape {lab.shape} but {name} is {tuple(image.shape)}: it is not on the "
                          "image's grid. Use the segmentation made for this scan (or resample it onto it first).")
    img_affine = getattr(image, "affine", None)
    if affine is not None and img_affine is not None:
        scale = max(1.0, float(np.abs(img_affine[:3]).max()))
        if not np.allclose(affine, img_affine, atol=1e-3 * scale):
            worst = float(np.abs(affine - img_affine).max())
            raise RegionError(f"{where} is not aligned with {name}: their affines differ by up to {worst:.3g} mm. "
                              "The segmentation belongs to another scan or was resampled; use the one made on this "
                              "scan's grid.")
