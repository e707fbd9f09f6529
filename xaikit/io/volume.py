"""Volumes in and maps out: NIfTI files, DICOM series folders, multi-frame DICOM; maps written on the source grid.

* :func:`read_volume` reads a ``.nii``/``.nii.gz`` file, a multi-frame DICOM file or a folder holding one
  DICOM series, and refuses a 4-D (time) NIfTI unless a frame is chosen.
* :func:`read_dicom_series` stacks single-slice DICOM files of one series in the order of their positions
  along the slice normal (Image Position/Orientation Patient), checks the slice spacing is even and builds
  the affine, so a series reads into the same :class:`MedicalImage` contract as a NIfTI volume
  (``(D, H, W)``, affine from ``(d, h, w)`` to RAS mm). pydicom reads single files only and nibabel's DICOM
  support (``nibabel.nicom``) is deprecated, so the stacking is written here (PS3.3 C.7.6.2.1.1).
* :func:`write_map_nifti` writes a map that lies on a source volume's grid as NIfTI with the *source file's*
  voxel order, affine and qform/sform codes (free-text header fields cleared), so it opens aligned over the
  original scan in 3D Slicer, ITK-SNAP or FSLeyes; for a DICOM series the affine built on reading is used.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom

from .._util import atomic_path
from ..errors import ArgumentError, ImageReadError, ImageWriteError
from .dicom import read_dicom
from .image import MedicalImage
from .nifti import read_nifti, save_nifti, write_nifti
from .secondary_capture import _dataset, _ds, _rescale, _set_pixels, _stored, _uid

__all__ = ["read_volume", "read_dicom_series", "write_dicom_series", "write_map_nifti"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def read_volume(path: str | os.PathLike, *, frame: int | None = None) -> MedicalImage:
    """Read a 3D volume from a NIfTI file, a multi-frame DICOM file, or a folder with one DICOM series.

    Parameters
    ----------
    path : path-like
        ``.nii``/``.nii.gz`` file, ``.dcm`` file, or a folder of DICOM slices.
    frame : int, optional
        For a 4-D NIfTI (time series): the volume to read. Required when there are several.

    Returns
    -------
    MedicalImage
        ``(D, H, W)`` with spacing and affine (``(d, h, w)`` to RAS mm).
    """
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        n_frames = _nifti_frames(path)
        if n_frames > 1 and frame is None:
            raise ArgumentError(f"{path} is a 4-D NIfTI holding {n_frames} volumes (e.g. time points); choose one "
                                f"with read_volume(path, frame=k), 0 <= k < {n_frames}.")
        image = read_nifti(path, volume=frame)
    else:
        image = read_dicom(path)
    if image.ndim != 3:
        raise ArgumentError(f"{path} holds a 2-D image of shape {image.shape}, not a volume.")
    return image


def _nifti_frames(path: Path) -> int:
    try:
        shape = nib.load(path).shape
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot be read as NIfTI ({type(exc).__name__}: {exc}).") from exc
    return int(shape[3]) if len(shape) >= 4 else 1


def read_dicom_series(folder: str | os.PathLike, *, series_uid: str | None = None) -> MedicalImage:
    """Stack the single-slice DICOM files of one series in ``folder`` into a ``(D, H, W)`` volume.

    Slices are ordered by their position along the slice normal (row x column direction cosines), from
    the lowest to the highest; ``d`` runs along that normal. Pixel values go through :func:`read_dicom`
    (modality LUT, MONOCHROME1 handling), metadata is de-identified.

    Parameters
    ----------
    folder : path-like
        Folder holding the files (other files, e.g. ``DICOMDIR`` or text, are skipped; non-image DICOM too).
    series_uid : str, optional
        Which series to read when the folder holds several.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: not a folder; give the folder holding the series' DICOM files.")
    slices = _series_headers(folder, series_uid)
    ori = np.asarray(slices[0][1].ImageOrientationPatient, dtype=np.float64)
    row, col = ori[:3], ori[3:]
    normal = np.cross(row, col)
    slices.sort(key=lambda item: float(np.dot(normal, np.asarray(item[1].ImagePositionPatient, float))))
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) for _, ds in slices])
    step = _slice_step(positions, normal, folder)
    images = [read_dicom(p) for p, _ in slices]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ImageReadError(f"{folder}: the slices of the series have different sizes {sorted(shapes)}.")
    spacing_rc = images[0].spacing
    affine = np.eye(4)
    affine[:3, 0] = _LPS_TO_RAS @ step
    affine[:3, 1] = _LPS_TO_RAS @ (col * spacing_rc[0])
    affine[:3, 2] = _LPS_TO_RAS @ (row * spacing_rc[1])
    affine[:3, 3] = _LPS_TO_RAS @ positions[0]
    meta = {k: v for k, v in images[0].meta.items() if k not in ("n_frames", "frame")}
    meta.update(format="DICOM series", n_slices=len(images))
    return MedicalImage(np.stack([im.array for im in images]), spacing=(float(np.linalg.norm(step)), *spacing_rc),
                        window=images[0].window, affine=affine, modality=images[0].modality, meta=meta, source=folder)


def _series_headers(folder: Path, series_uid: str | None) -> list[tuple[Path, Any]]:
    found: dict[str, list] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError):
            continue  # not DICOM (README, DICOMDIR index...): a series folder may hold such files
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            continue
        found.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    if not found:
        raise ImageReadError(f"{folder}: no DICOM slices with Image Position/Orientation Patient found; a series "
                             "folder needs the slice files of one CT/MR series.")
    if series_uid is None and len(found) > 1:
        raise ArgumentError(f"{folder} holds {len(found)} series "
                            f"({', '.join(f'{k}: {len(v)} files' for k, v in found.items())}); "
                            "choose one with series_uid=.")
    key = series_uid if series_uid is not None else next(iter(found))
    if key not in found:
        raise ArgumentError(f"series_uid={series_uid!r} is not in {folder}; it holds {sorted(found)}.")
    slices = found[key]
    if len(slices) < 2:
        raise ImageReadError(f"{folder}: the series has a single slice; read it with read_dicom.")
    return slices


def _slice_step(positions: np.ndarray, normal: np.ndarray, folder: Path) -> np.ndarray:
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    if np.any(np.abs(along) < 1e-6):
        raise ImageReadError(f"{folder}: two slices share a position (duplicate files or several acquisitions); "
                             "keep one file per position.")
    if not np.allclose(steps, steps[0], atol=1e-3 * max(1.0, abs(float(along[0])))):
        raise ImageReadError(f"{folder}: the slices are not evenly spaced (steps along the normal "
                             f"{np.round(np.unique(np.round(along, 3)), 3).tolist()} mm); missing slices or a "
                             "variable-thickness series. Resample it (e.g. dcm2niix) before using it as a volume.")
    return steps[0]


def write_dicom_series(image: MedicalImage, folder: str | os.PathLike, *, uid_seed: str, description: str = "",
                       modality: str = "CT") -> list[Path]:
    """Write a ``(D, H, W)`` volume as one single-slice DICOM file per slice with Image Position/Orientation.

    The geometry comes from ``image.affine`` (``(d, h, w)`` to RAS); it must have orthogonal columns. UIDs are
    derived from ``uid_seed`` (reproducible files); no patient identifier is written.
    """

    if not isinstance(image, MedicalImage) or image.ndim != 3 or image.affine is None:
        raise ArgumentError("write_dicom_series needs a 3D MedicalImage with an affine.")
    folder = Path(folder)
    lps = _LPS_TO_RAS @ image.affine[:3, :4]
    row = lps[:, 2] / np.linalg.norm(lps[:, 2])
    col = lps[:, 1] / np.linalg.norm(lps[:, 1])
    slope, intercept = _rescale(image.array, None)
    paths = []
    for k, plane in enumerate(image.array):
        sl = MedicalImage(plane, spacing=image.spacing[1:], window=image.window, modality=modality)
        ds = _dataset(sl, modality, f"{uid_seed}|slice{k}", "", "", description)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(uid_seed, "study"), _uid(uid_seed, "series")
        ds.FrameOfReferenceUID = _uid(uid_seed, "frame-of-reference")
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
        ds.ImagePositionPatient = [_ds(v) for v in lps[:, 3] + k * lps[:, 0]]
        ds.SliceThickness = _ds(image.spacing[0])
        _set_pixels(ds, _stored(plane, slope, intercept), "MONOCHROME2")
        ds.WindowCenter, ds.WindowWidth = _ds(image.window[0]), _ds(image.window[1])
        if (slope, intercept) != (1.0, 0.0):
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds(slope), _ds(intercept), "HU"
        path = folder / f"slice{k:04d}.dcm"
        try:
            with atomic_path(path) as tmp:
                ds.save_as(tmp, enforce_file_format=True)
        except OSError as exc:
            raise ImageWriteError(f"{path}: could not write the DICOM file ({exc}).") from exc
        paths.append(path)
    return paths


def write_map_nifti(values: Any, source: MedicalImage, path: str | os.PathLike, *, dtype: Any = np.float32) -> Path:
    """Write ``values`` (on ``source``'s ``(D, H, W)`` grid) as NIfTI over the source scan.

    When ``source`` was read from a NIfTI file, the map is written in that file's own voxel order with its
    affine, qform/sform codes and units (``nib.load(map).affine == nib.load(source).affine`` and the shapes
    match), the free-text fields (descrip, aux_file, intent_name) left empty; otherwise (DICOM, arrays) with
    ``source.affine`` in xaikit's layout. Either way voxel ``(i, j, k)`` of the map covers the same world point
    as the same voxel of the source.

    ``dtype=np.int16`` stores the map in 16 bits with NIfTI's scale factor (``scl_slope``/``scl_inter``, chosen by
    nibabel; every reader applies it): about half the bytes of float32, values within 1/65535 of the map's range
    (a saliency map on a 48 x 64 x 64 grid: 0.57 MB -> 0.27 MB gzipped).
    """
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.int16)):
        raise ArgumentError(f"write_map_nifti: dtype={dtype!r} is not supported; use np.float32 (exact) or np.int16 "
                            "(scaled, half the bytes).")
    arr = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    arr = np.asarray(arr, dtype=np.float32)
    if not isinstance(source, MedicalImage) or arr.shape != source.shape:
        shape = source.shape if isinstance(source, MedicalImage) else type(source).__name__
        raise ArgumentError(f"write_map_nifti: the map has shape {arr.shape} but the source volume is {shape}; "
                            "bring it onto the source grid first (VolumePreprocess.write_map does).")
    src = source.source
    if src is None or not str(src).lower().endswith((".nii", ".nii.gz")):
        return write_nifti(MedicalImage(arr, spacing=source.spacing, affine=source.affine,
                                        window=_map_window(arr)), path, dtype=dtype)
    return _write_like_nifti(arr, Path(src), Path(path), source.meta.get("volume"), np.dtype(dtype))


def _write_like_nifti(arr: np.ndarray, src_path: Path, path: Path, frame: int | None,
                      dtype: np.dtype = np.dtype(np.float32)) -> Path:
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ArgumentError(f"{path}: a NIfTI file name must end in .nii or .nii.gz.")
    src = nib.load(src_path)
    if len(src.shape) == 4:
        src = src.slicer[:, :, :, int(frame or 0)]
    elif len(src.shape) == 2:
        raise ArgumentError(f"{src_path} is a 2-D NIfTI; write_map_nifti writes maps of volumes.")
    canonical = nib.as_closest_canonical(src)
    data = arr.transpose(2, 1, 0)[::-1, ::-1, :]  # inverse of read_nifti's layout, see xaikit.io.nifti
    back = nib.orientations.ornt_transform(nib.io_orientation(canonical.affine), nib.io_orientation(src.affine))
    data = nib.orientations.apply_orientation(data, back)
    header = src.header.copy()
    header.set_data_dtype(dtype)
    for key in ("descrip", "aux_file", "intent_name"):
        header[key] = b""
    out = type(src)(np.ascontiguousarray(data, dtype=np.float32), src.affine, header=header)
    # float32: stored as is; int16: nibabel picks the scale factor that fits the map's range
    out.header.set_slope_inter(*((1.0, 0.0) if dtype == np.float32 else (np.nan, np.nan)))
    lo, hi = (float(v) for v in np.percentile(np.abs(arr), [0, 100]))
    out.header["cal_min"], out.header["cal_max"] = -hi, hi
    return save_nifti(out, path)


def _map_window(arr: np.ndarray) -> tuple[float, float]:
    hi = float(np.abs(arr).max()) or 1.0
    return (0.0, 2.0 * hi)
