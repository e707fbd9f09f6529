"""One entry point, :func:`read_image`, that picks the reader from the file's extension or content."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import ArgumentError, ImageReadError
from ._common import check_rgb, existing_file
from .dicom import read_dicom
from .image import MedicalImage
from .nifti import read_nifti
from .raster import read_npy, read_raster

__all__ = ["read_image", "SUPPORTED_EXTENSIONS", "image_format"]

#: File name endings :func:`read_image` understands, by format. Files without an extension are
#: recognized by content (DICOM's ``DICM`` preamble, PNG/JPEG/TIFF/NPY/NIfTI magic numbers).
SUPPORTED_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "dicom": (".dcm", ".dicom"),
    "nifti": (".nii", ".nii.gz"),
    "raster": (".png", ".jpg", ".jpeg", ".tif", ".tiff"),
    "npy": (".npy",),
}

# Leading bytes of each format (DICOM is checked separately: its magic sits at byte 128).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "raster"),
    (b"\xff\xd8\xff", "raster"),
    (b"II*\x00", "raster"),
    (b"MM\x00*", "raster"),
    (b"\x93NUMPY", "npy"),
    (b"\x1f\x8b", "nifti"),  # gzip: in medical imaging, a .nii.gz
)


def image_format(path: str | os.PathLike) -> str:
    """The format :func:`read_image` would use for ``path``: ``"dicom"``, ``"nifti"``, ``"raster"`` or ``"npy"``.

    The extension decides; a file with an unknown extension is still read as DICOM when it carries the
    ``DICM`` preamble (scanners write names like ``IM0001.1``); a file without extension is recognized
    by its content.
    """
    path = existing_file(path)
    name = path.name.lower()
    for fmt, endings in SUPPORTED_EXTENSIONS.items():
        if name.endswith(endings):
            return fmt
    sniffed = _sniff(path)
    if sniffed == "dicom" or (sniffed is not None and not path.suffix):
        return sniffed
    if not path.suffix:
        return "dicom"  # DICOM without preamble (old ACR-NEMA style): pydicom decides below.
    supported = ", ".join(e for endings in SUPPORTED_EXTENSIONS.values() for e in endings)
    raise ImageReadError(f"{path}: unknown extension {path.suffix!r} and no DICOM preamble. "
                         f"Supported: {supported} (or DICOM files without extension).")


def _sniff(path: Path) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(348)
    if head[128:132] == b"DICM":
        return "dicom"
    if head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] == b"n+2\x00":
        return "nifti"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def read_image(
    path: str | os.PathLike,
    *,
    frame: int | None = None,
    volume: int | None = None,
    rgb: str = "gray",
    keep_identifiers: bool = False,
    max_voxels: int | None = None,
) -> MedicalImage:
    """Read a medical image file (DICOM, NIfTI, PNG/JPEG/TIFF, ``.npy``) into a :class:`MedicalImage`.

    Parameters
    ----------
    path : str or os.PathLike
        The file. The reader is chosen by :func:`image_format`.
    frame : int, optional
        Multi-frame DICOM or multi-page TIFF: read this frame only (2D). Default: all frames as a volume.
    volume : int, optional
        4D NIfTI: the volume (time point) to read. Default 0, with a warning.
    rgb : {"gray", "keep"}
        Colour images: ``"gray"`` converts to BT.601 luminance; ``"keep"`` returns ``(3, H, W)``.
    keep_identifiers : bool
        DICOM only: also put patient/study identifiers (PatientID, names, dates, UIDs) into ``meta``.
        Off by default: ``meta`` follows the DICOM PS3.15 basic de-identification profile.
    max_voxels : int, optional
        Largest number of voxels (pixel values) a file may claim, checked from its header before
        decoding (default 2**29: 2 GiB as float32). Headers are not trusted: their claim is also checked
        against the file's length.

    Returns
    -------
    MedicalImage

    Raises
    ------
    ImageReadError
        Missing, empty, truncated or undecodable file, unknown extension, no pixel data, no decoder
        for a compressed transfer syntax, NaN/inf pixels, or a shape that is not 2D/3D.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> img = read_image(get_testdata_file("CT_small.dcm"))
    >>> img.modality, img.shape
    ('CT', (128, 128))
    """
    check_rgb(rgb)
    fmt = image_format(path)
    if fmt != "nifti" and volume is not None:
        raise ArgumentError(f"volume={volume} applies to 4D NIfTI files only; {Path(path).name} is {fmt}.")
    if fmt in ("nifti", "npy") and frame is not None:
        raise ArgumentError(f"frame={frame} applies to multi-frame DICOM/TIFF only; {Path(path).name} is {fmt}.")
    return _READERS[fmt](path, frame=frame, volume=volume, rgb=rgb, keep_identifiers=keep_identifiers,
                         max_voxels=max_voxels)


_READERS: dict[str, Callable[..., MedicalImage]] = {
    "dicom": lambda path, *, frame, volume, rgb, keep_identifiers, max_voxels: read_dicom(
        path, frame=frame, rgb=rgb, keep_identifiers=keep_identifiers, max_voxels=max_voxels),
    "nifti": lambda path, *, frame, volume, rgb, keep_identifiers, max_voxels: read_nifti(
        path, volume=volume, max_voxels=max_voxels),
    "raster": lambda path, *, frame, volume, rgb, keep_identifiers, max_voxels: read_raster(
        path, frame=frame, rgb=rgb, max_voxels=max_voxels),
    "npy": lambda path, *, frame, volume, rgb, keep_identifiers, max_voxels: read_npy(path, max_voxels=max_voxels),
}
