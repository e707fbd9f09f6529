"""Checks and conversions shared by every reader and writer of :mod:`xaikit.io` (private)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._util import file_problem
from ..errors import ArgumentError, ImageReadError

__all__ = ["existing_file", "checked_pixels", "rgb_to_gray", "check_rgb", "check_voxels", "LUMA_WEIGHTS",
           "MAX_VOXELS"]

#: Default limit on the voxels one read may decode: 2**29 (512 Mi voxels, 2 GiB as float32; an 800^3 CT
#: fits). A header claiming more is refused before anything is allocated; pass ``max_voxels=`` to raise it.
MAX_VOXELS = 2**29

#: ITU-R BT.601 luma weights (R, G, B). The same weights define the Y of DICOM's YBR_FULL
#: (PS3.3 C.7.6.3.1.2) and Pillow's ``convert("L")``, so a grey read of a YBR DICOM, of an RGB
#: DICOM and of an RGB JPEG agree. (skimage's ``rgb2gray`` uses BT.709 weights, hence hand-written.)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

RGB_MODES = ("gray", "keep")


def existing_file(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`Path`, or an :class:`ImageReadError` when it is missing, not a file or unreadable."""
    path = Path(path).expanduser()
    try:
        return _readable(path)
    except PermissionError as exc:
        raise ImageReadError(f"{path}: permission denied; this user cannot read the file (or search a folder "
                             "above it). Ask its owner for read access (e.g. chmod u+r) or copy it somewhere "
                             "you can read.") from exc


def _readable(path: Path) -> Path:
    problem = file_problem(path)
    if problem == "does not exist":
        raise ImageReadError(f"{path}: no such file. Check the path (relative paths start at {Path.cwd()}).")
    if problem == "is a folder, not a file":
        raise ImageReadError(
            f"{path} is a directory; pass one image file (a DICOM series folder is read file by file)."
        )
    if problem:
        raise ImageReadError(f"{path} {problem}; pass the path of one image file.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path} is an empty file (0 bytes); the copy or download is incomplete.")
    with open(path, "rb"):
        pass
    return path


def check_voxels(path: Path, shape: tuple[int, ...], max_voxels: int | None, what: str = "image") -> None:
    """Refuse a claimed ``shape`` above the voxel limit before any memory is allocated for it."""
    limit = MAX_VOXELS if max_voxels is None else int(max_voxels)
    n = 1
    for size in shape:
        n *= int(size)
    if n > limit:
        raise ImageReadError(
            f"{path}: the header claims a {what} of shape {tuple(int(s) for s in shape)} = {n:,} voxels "
            f"({n * 4 / 2**30:.1f} GiB as float32), over the limit of {limit:,}. A damaged or hostile header, or "
            "a really large file: if you trust it, pass max_voxels= (e.g. max_voxels=2**31) to read it."
        )


def check_rgb(rgb: str) -> str:
    """Validate the ``rgb=`` argument shared by the readers."""
    if rgb not in RGB_MODES:
        raise ArgumentError(f"rgb={rgb!r} is not one of {RGB_MODES}: 'gray' converts colour to luminance, "
                            "'keep' returns the channels first as (3, H, W).")
    return rgb


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luminance ``0.299 R + 0.587 G + 0.114 B`` (BT.601) of an ``(..., 3)`` or ``(..., 4)`` array.

    An alpha channel is ignored. Computed in float64, returned as float32.
    """
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float64)
    return (rgb[..., :3].astype(np.float64) @ weights).astype(np.float32)


def checked_pixels(array: np.ndarray, path: Path | None, *, what: str = "image") -> np.ndarray:
    """Return ``array`` as float32 after checking it can be a :class:`MedicalImage` read from ``path``.

    Raises :class:`ImageReadError` naming the file for an empty image, a shape that is not 2D/3D,
    a non-numeric dtype, or non-finite pixels (with their count).
    """
    name = str(path) if path is not None else "<array>"
    array = np.asarray(array)
    if array.size == 0:
        raise ImageReadError(f"{name}: the {what} is empty (shape {array.shape}); the file holds no pixels.")
    if array.ndim not in (2, 3):
        raise ImageReadError(
            f"{name}: the {what} has shape {array.shape} ({array.ndim}D); xaikit reads 2D (H, W) images and "
            "3D (D, H, W) volumes. Select a frame (frame=) or volume (volume=), or squeeze the extra axes."
        )
    if array.dtype.kind not in "biuf":
        raise ImageReadError(f"{name}: the {what} has dtype {array.dtype}; pixels must be bool, int or float.")
    pixels = array.astype(np.float32, copy=False)
    bad = int(np.size(pixels) - np.count_nonzero(np.isfinite(pixels)))
    if bad:
        raise ImageReadError(
            f"{name}: {bad} of {pixels.size} pixels/voxels are NaN or infinite. Clean the file "
            "(e.g. numpy.nan_to_num, or mask them in the tool that wrote it) and save it again."
        )
    return pixels
