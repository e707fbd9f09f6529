"""NIfTI-1/2 files into :class:`MedicalImage` through nibabel, and back.

Axis convention
---------------
nibabel indexes voxels ``(x, y, z)``. xaikit first reorients to the closest canonical orientation,
RAS+ (``nibabel.as_closest_canonical``: x to the patient's Right, y Anterior, z Superior), then lays the
volume out as ``(D, H, W)`` exactly like a stack of axial DICOM slices seen in the radiological view::

    array[d, h, w] = canonical[X - 1 - w, Y - 1 - h, d]

* ``d`` (slices) runs inferior -> superior,
* ``h`` (rows) runs anterior -> posterior (the front of the body at the top of a slice),
* ``w`` (columns) runs from the patient's right to the patient's left (right on the viewer's left).

``MedicalImage.affine`` maps ``(d, h, w, 1)`` to RAS millimetres (the canonical affine composed with
this permutation/flip), so world coordinates stay exact; ``spacing`` is ``(dz, dy, dx)`` in mm.
A NIfTI with one slice (or a 2D NIfTI) reads as a 2D ``(H, W)`` image.
"""
from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .._util import atomic_path
from ..errors import ArgumentError, ImageReadError, ImageWriteError, XaikitError
from ._common import MAX_VOXELS, check_voxels, checked_pixels, existing_file
from .image import MedicalImage

__all__ = ["read_nifti", "write_nifti", "nifti_bytes", "ras_to_dhw", "dhw_to_ras"]

# Spatial units of the header (xyzt_units) in millimetres; 'unknown' is taken as mm (and noted).
_UNIT_MM = {"mm": 1.0, "meter": 1000.0, "micron": 1e-3, "unknown": 1.0}


def ras_to_dhw(shape_xyz: tuple[int, int, int]) -> np.ndarray:
    """4x4 matrix taking xaikit indices ``(d, h, w, 1)`` to canonical voxel indices ``(x, y, z, 1)``."""
    nx, ny, _ = shape_xyz
    return np.array([[0, 0, -1, nx - 1], [0, -1, 0, ny - 1], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def dhw_to_ras(spacing: tuple[float, float, float]) -> np.ndarray:
    """A default affine for a ``(D, H, W)`` array: ``d`` superior, ``h`` posterior, ``w`` to the left (mm)."""
    sd, sh, sw = spacing
    return np.array([[0, 0, -sw, 0], [0, -sh, 0, 0], [sd, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def read_nifti(path: str | os.PathLike, *, volume: int | None = None,
               max_voxels: int | None = None) -> MedicalImage:
    """Read a 2D, 3D or 4D NIfTI file: scaled values, canonical (RAS) orientation, ``(D, H, W)`` layout.

    Parameters
    ----------
    path : str or os.PathLike
        ``.nii`` or ``.nii.gz`` file.
    volume : int, optional
        4D files: the volume (4th index) to read. Default 0, with a warning when there are several.
    max_voxels : int, optional
        Refuse a header claiming more voxels than this (default :data:`xaikit.io._common.MAX_VOXELS`,
        2**29), before reading, and a read whose peak memory (stored voxels + float32 result) would pass
        ``BYTES_PER_LIMIT_VOXEL * max_voxels`` bytes (3 GiB by default). The claimed size is also checked
        against the file's length, so a short file with a huge header fails at once instead of allocating
        what the header says. The read holds the stored voxels and one float32 copy, nothing more.

    Returns
    -------
    MedicalImage
        float32 values ``scl_slope * stored + scl_inter`` (nibabel's ``get_fdata`` in float32, never
        through a float64 copy), spacing in mm
        (header zooms converted from the header's unit), affine mapping ``(d, h, w)`` to RAS mm
        (see the module docstring), window from ``cal_min``/``cal_max`` when set.

    Examples
    --------
    >>> import os; from nibabel.testing import data_path
    >>> read_nifti(os.path.join(data_path, "anatomical.nii")).shape
    (25, 41, 33)
    """
    path = existing_file(path)
    try:
        img = nib.load(path)
        _check_claim(img, path, max_voxels)
        n_volumes, img = _one_volume(img, volume, path)
        data, canonical_affine, zooms, scaling = _canonical(img, path)
    except XaikitError:
        raise
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, nib.orientations.OrientationError,
            OSError, EOFError, ValueError, TypeError, KeyError, IndexError, zlib.error) as exc:
        # what nibabel raises on a header it cannot interpret (found by tests/test_fuzz_readers.py)
        raise ImageReadError(f"{path}: cannot be read as NIfTI ({type(exc).__name__}: {exc}). "
                             "The file may be truncated or not NIfTI.") from exc
    to_mm = _UNIT_MM.get(_xyz_unit(img.header), 1.0)
    perm = ras_to_dhw(data.shape)
    affine = canonical_affine @ perm
    affine[:3, :] *= to_mm
    zooms = zooms * to_mm
    array = _float32(data[::-1, ::-1, :].transpose(2, 1, 0), scaling, path)
    del data  # the stored voxels (nibabel keeps no reference): freed before the checks below allocate masks
    spacing = (float(zooms[2]), float(zooms[1]), float(zooms[0]))
    if not all(np.isfinite(v) and v > 0 for v in spacing) or not np.isfinite(affine).all():
        raise ImageReadError(f"{path}: the header's voxel size {spacing} (pixdim) or affine is not finite and "
                             "positive, so distances in this image are unknown. Fix pixdim/srow in the header "
                             "(e.g. nibabel's header.set_zooms) and save the file again.")
    if array.shape[0] == 1:
        array, spacing = array[0], spacing[1:]
    pixels = checked_pixels(array, path, what="volume")
    meta = _meta(img, n_volumes, volume)
    return MedicalImage(pixels, spacing=spacing, window=_window(img.header), affine=affine, modality="OT",
                        meta=meta, source=path)


def _check_claim(img, path: Path, max_voxels: int | None) -> None:
    """The header's shape, before any voxel is read: dimensionality, the voxel limit, and the file's length."""
    shape = tuple(int(s) for s in img.shape)
    if img.ndim < 2:
        raise ImageReadError(f"{path}: the image is {img.ndim}D {shape}; xaikit reads 2D, 3D and 4D NIfTI. "
                             "A 1-D NIfTI holds a signal or a table, not an image.")
    check_voxels(path, shape[:3], max_voxels, what="volume")
    itemsize = img.header.get_data_dtype().itemsize
    _check_bytes(path, shape[:3], itemsize, max_voxels)
    needed = int(img.header.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * itemsize
    have = _stored_length(path, needed)
    if have < needed:
        raise ImageReadError(f"{path}: the header claims shape {shape} of {img.header.get_data_dtype()} "
                             f"({needed:,} bytes with the header), but the file holds only {have:,}; it is "
                             "truncated or its header is wrong. Copy or export the file again.")


#: Bytes a read may hold at its peak per voxel of the limit: the float32 result (4) and the stored volume (up to 2,
#: int16) -- 3 GiB at the default 2**29 voxels. A float64 or 16-byte volume near the voxel limit needs more.
BYTES_PER_LIMIT_VOXEL = 6


def _check_bytes(path: Path, shape: tuple[int, ...], itemsize: int, max_voxels: int | None) -> None:
    """The memory the read will hold at its peak (stored voxels + float32 result) against the byte cap."""
    limit = BYTES_PER_LIMIT_VOXEL * (MAX_VOXELS if max_voxels is None else int(max_voxels))
    n = int(np.prod(shape, dtype=np.int64))
    need = n * (4 + itemsize)
    if need > limit:
        raise ImageReadError(
            f"{path}: reading this volume {tuple(shape)} of {itemsize}-byte voxels needs {need / 2**30:.1f} GiB at its "
            f"peak (the stored voxels and the float32 result), over the cap of {limit / 2**30:.1f} GiB "
            f"({BYTES_PER_LIMIT_VOXEL} bytes x max_voxels). If you trust the file and have the memory, pass a larger "
            "max_voxels= (e.g. max_voxels=2**31).")


def _stored_length(path: Path, needed: int) -> int:
    """Bytes the file holds once decompressed, counted only as far as ``needed`` (nothing is allocated)."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if not gzipped:
        return path.stat().st_size
    total = 0
    with gzip.open(path, "rb") as fh:
        while total < needed:
            chunk = fh.read(min(1 << 22, needed - total))
            if not chunk:
                break
            total += len(chunk)
    return total


def _canonical(img, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """float32 voxels reoriented to the closest canonical (RAS+) axes, their affine and zooms: what
    ``nib.as_closest_canonical`` does, but without its float64 detour through the scaled data. The voxels are
    returned as stored (a view of nibabel's array) with the header's scaling; :func:`_float32` makes the one copy."""
    ornt = nib.io_orientation(img.affine)
    if np.isnan(ornt).any():
        raise ImageReadError(f"{path}: the header's affine {img.affine.tolist()} is singular (e.g. all zero), so "
                             "the orientation of the voxels is unknown. Fix the sform/qform (e.g. nibabel's "
                             "set_sform with the scanner geometry) and save the file again.")
    stored, scaling = _stored(img)
    data = nib.orientations.apply_orientation(stored, ornt)  # flips and a transpose: views, no copy
    affine = img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape[:3])
    zooms = np.empty(3)
    zooms[ornt[:, 0].astype(int)] = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    return data, affine, zooms, scaling


def _stored(img) -> tuple[np.ndarray, tuple]:
    """The voxels as stored (nibabel's one array) and the read scaling ``(slope, inter)`` to apply to them;
    nibabel's ``get_fdata`` would make a float array of the whole volume here already."""
    proxy = img.dataobj
    if nib.is_proxy(proxy) and hasattr(proxy, "get_unscaled"):
        return proxy.get_unscaled(), (proxy.slope, proxy.inter)
    return np.asarray(proxy), (1.0, 0.0)


def _float32(view: np.ndarray, scaling: tuple, path: Path) -> np.ndarray:
    """One C-contiguous float32 copy of ``view`` scaled as nibabel scales it (``apply_read_scaling``, then float32),
    slice by slice: the peak is the stored volume plus the result, not two float volumes (3x the result before)."""
    if view.dtype.kind not in "biuf":  # RGB24 / RGBA32 / complex voxels: not one intensity per voxel
        raise ImageReadError(f"{path}: the voxels are of type {view.dtype} (colour or complex), not one intensity "
                             "per voxel; convert the volume to a scalar type (e.g. with nibabel) first.")
    slope, inter = scaling
    out = np.empty(view.shape, dtype=np.float32)
    for k in range(view.shape[0]):
        out[k] = nib.volumeutils.apply_read_scaling(np.asarray(view[k]), slope, inter)
    return out


def _one_volume(img, volume: int | None, path: Path):
    """The 3D image to read (a 2D image gets a singleton z axis) and the number of volumes in the file."""
    if img.ndim == 2:
        return 1, nib.Nifti1Image(img.get_fdata(dtype=np.float32)[..., None], img.affine, img.header)
    if img.ndim == 3:
        if volume not in (None, 0):
            raise ArgumentError(f"volume={volume} is out of range for the 3D file {path}; use volume=None.")
        return 1, img
    if img.ndim > 4:
        raise ImageReadError(f"{path}: the image is {img.ndim}D {img.shape}; xaikit reads 2D, 3D and 4D NIfTI.")
    n_volumes = int(img.shape[3])
    if volume is None:
        if n_volumes > 1:
            warnings.warn(f"{path} holds {n_volumes} volumes; reading volume 0. Pass volume= to choose.",
                          stacklevel=4)
        volume = 0
    if not 0 <= volume < n_volumes:
        raise ArgumentError(f"volume={volume} is out of range for {path}, which holds {n_volumes} volumes.")
    return n_volumes, img.slicer[:, :, :, volume]


def _xyz_unit(header) -> str:
    """The header's spatial unit; an undefined code (nibabel's KeyError) reads as 'unknown' (taken as mm)."""
    try:
        return header.get_xyzt_units()[0]
    except KeyError:
        return "unknown"


def _window(header) -> tuple[float, float] | None:
    lo, hi = float(header.get("cal_min", 0)), float(header.get("cal_max", 0))
    return ((lo + hi) / 2.0, hi - lo) if hi > lo else None


def _meta(img, n_volumes: int, volume: int | None) -> dict:
    """Geometry facts only: free-text header fields (descrip, aux_file, intent_name) may name a patient."""
    header = img.header
    meta = {
        "format": "NIfTI-2" if isinstance(header, nib.Nifti2Header) else "NIfTI-1",
        "original_axcodes": "".join(nib.aff2axcodes(img.affine)),
        "datatype": str(header.get_data_dtype()),
        "xyz_unit": _xyz_unit(header),
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
        "n_volumes": n_volumes,
        "spacing_unit": "mm",
    }
    if n_volumes > 1:
        meta["volume"] = 0 if volume is None else int(volume)
    return meta


def write_nifti(
    image: MedicalImage | np.ndarray,
    path: str | os.PathLike,
    affine: np.ndarray | None = None,
    *,
    dtype: Any = np.float32,
) -> Path:
    """Write a 2D/3D image as NIfTI-1 (``.nii`` or ``.nii.gz``), atomically.

    Parameters
    ----------
    image : MedicalImage or numpy.ndarray
        Pixels in xaikit's ``(D, H, W)`` (or ``(H, W)``) layout; an array is used as is.
    path : str or os.PathLike
        Destination; ``.nii.gz`` is gzip-compressed (deterministically: no time stamp, no file name).
    affine : numpy.ndarray, optional
        4x4 map from ``(d, h, w, 1)`` to RAS mm. Default: ``image.affine``, else :func:`dhw_to_ras` of
        the spacing. :func:`read_nifti` of the written file returns the same array and affine.
    dtype : numpy dtype, optional
        Stored type: float32 (default, exact) or an integer type, with the scale factor nibabel chooses for the
        array's range (``scl_slope``/``scl_inter``, applied by every reader).

    Returns
    -------
    pathlib.Path
        The written file. The header carries ``cal_min``/``cal_max`` from ``image.window``.
    """
    image = image if isinstance(image, MedicalImage) else MedicalImage(np.asarray(image))
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ArgumentError(f"{path}: a NIfTI file name must end in .nii or .nii.gz.")
    array = image.array if image.ndim == 3 else image.array[None]
    spacing = image.spacing if image.ndim == 3 else (1.0,) + image.spacing
    if affine is None:
        affine = image.affine if image.affine is not None else dhw_to_ras(spacing)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ArgumentError(f"affine must be a 4x4 matrix; got shape {affine.shape}.")
    nifti = nib.Nifti1Image(np.ascontiguousarray(array, dtype=np.float32), affine)
    nifti.header.set_data_dtype(dtype)
    nifti.header.set_xyzt_units("mm")
    center, width = image.window
    nifti.header["cal_min"], nifti.header["cal_max"] = center - width / 2.0, center + width / 2.0
    return save_nifti(nifti, path)


def save_nifti(nifti: nib.Nifti1Image, path: Path) -> Path:
    """``nib.save`` atomically (the file appears whole or not at all); an OS error becomes an ImageWriteError."""
    try:
        with atomic_path(path) as tmp:
            nib.save(nifti, tmp)
    except OSError as exc:
        raise ImageWriteError(f"{path}: could not write the NIfTI file ({exc}).") from exc
    return path


def nifti_bytes(array, affine: np.ndarray | None = None, *, spacing=(1.0, 1.0, 1.0), dtype=np.float32) -> bytes:
    """An uncompressed NIfTI-1 file (``.nii``) of a ``(D, H, W)`` array, built in memory (for in-browser viewers).

    Parameters
    ----------
    array : array ``D x H x W``
        Voxels in xaikit's layout.
    affine : numpy.ndarray, optional
        4x4 map from ``(d, h, w, 1)`` to RAS mm; default :func:`dhw_to_ras` of ``spacing``.
    dtype : numpy dtype
        Stored type (``np.uint8``/``np.int16`` for label volumes).

    Examples
    --------
    >>> data = nifti_bytes(np.zeros((2, 3, 4)))
    >>> data[344:348] == b"n+1\x00", len(data) == 352 + 2 * 3 * 4 * 4
    (True, True)
    """
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise ArgumentError(f"nifti_bytes needs a D x H x W array; got shape {arr.shape}.")
    affine = dhw_to_ras(tuple(spacing)) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ArgumentError(f"affine must be a finite 4x4 matrix; got {np.asarray(affine).tolist()}.")
    nifti = nib.Nifti1Image(np.ascontiguousarray(arr, dtype=dtype), affine)
    nifti.header.set_xyzt_units("mm")
    return nifti.to_bytes()
