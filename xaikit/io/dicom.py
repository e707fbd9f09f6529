"""DICOM files into :class:`MedicalImage` through pydicom.

Pixel values are exactly pydicom's: ``apply_modality_lut(ds.pixel_array, ds)`` (Rescale Slope/Intercept
or a Modality LUT Sequence), so CT is in Hounsfield units. MONOCHROME1 images (bigger = darker) are
reflected about the centre of the modality output range, ``lo + hi - value``, and their window centre
likewise, so bigger is always brighter and the displayed picture is unchanged. The default window is
the first Window Center/Width, else a linear fit of the first VOI LUT Sequence item, else a
percentile window.
"""
from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..errors import ArgumentError, ImageReadError
from ._common import check_rgb, check_voxels, checked_pixels, existing_file, rgb_to_gray
from .image import MedicalImage
from .privacy import dicom_meta

try:  # pydicom >= 3
    from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
except ImportError:  # pydicom 2.x
    from pydicom.pixel_data_handlers.util import apply_color_lut, apply_modality_lut

    get_decoder = None

__all__ = ["read_dicom", "decoder_packages"]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# pip packages able to decode each compressed transfer syntax family (pydicom's pixel handler docs).
_JPEG = "pylibjpeg pylibjpeg-libjpeg"
_DECODERS = {
    "1.2.840.10008.1.2.4.50": ("pillow", _JPEG, "python-gdcm"),
    "1.2.840.10008.1.2.4.51": (_JPEG, "python-gdcm", "pillow (8-bit only)"),
    "1.2.840.10008.1.2.4.57": (_JPEG, "python-gdcm"),
    "1.2.840.10008.1.2.4.70": (_JPEG, "python-gdcm"),
    "1.2.840.10008.1.2.4.80": (_JPEG, "pyjpegls", "python-gdcm"),
    "1.2.840.10008.1.2.4.81": (_JPEG, "pyjpegls", "python-gdcm"),
    "1.2.840.10008.1.2.4.90": ("pylibjpeg pylibjpeg-openjpeg", "pillow", "python-gdcm"),
    "1.2.840.10008.1.2.4.91": ("pylibjpeg pylibjpeg-openjpeg", "pillow", "python-gdcm"),
    "1.2.840.10008.1.2.4.201": ("pylibjpeg pylibjpeg-openjpeg",),
    "1.2.840.10008.1.2.4.202": ("pylibjpeg pylibjpeg-openjpeg",),
    "1.2.840.10008.1.2.4.203": ("pylibjpeg pylibjpeg-openjpeg",),
    "1.2.840.10008.1.2.5": ("pylibjpeg pylibjpeg-rle", "python-gdcm"),
}


def decoder_packages(transfer_syntax: str) -> tuple[str, ...]:
    """pip packages that would decode pixel data in ``transfer_syntax`` (a UID), e.g. for an error message."""
    return _DECODERS.get(str(transfer_syntax), ("pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg", "python-gdcm"))


def read_dicom(
    path: str | os.PathLike,
    *,
    frame: int | None = None,
    rgb: str = "gray",
    keep_identifiers: bool = False,
    max_voxels: int | None = None,
) -> MedicalImage:
    """Read a DICOM image (single- or multi-frame, grey or colour, any decodable transfer syntax).

    Parameters
    ----------
    path : str or os.PathLike
        The DICOM file.
    frame : int, optional
        Multi-frame files: read only this frame (a 2D image). Default: all frames as ``(D, H, W)``.
    rgb : {"gray", "keep"}
        Colour (RGB, YBR, palette) images: BT.601 luminance, or channels-first ``(3, H, W)``.
    keep_identifiers : bool
        Also copy patient/study identifiers into ``meta`` (see :mod:`xaikit.io.privacy`).
    max_voxels : int, optional
        Refuse a file whose Rows x Columns x Number of Frames x Samples per Pixel exceeds this (default
        2**29) before decoding.

    Returns
    -------
    MedicalImage
        ``array`` after the modality LUT (MONOCHROME1 inverted), ``spacing`` from Pixel Spacing
        (else Imager Pixel Spacing) and, for volumes, Spacing Between Slices / Grid Frame Offset Vector /
        Slice Thickness, in mm; ``meta["spacing_unit"]`` is ``"pixel"`` when the file has no spacing.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> img = read_dicom(get_testdata_file("CT_small.dcm"))
    >>> img.spacing
    (0.661468, 0.661468)
    """
    path = existing_file(path)
    check_rgb(rgb)
    ds = _dataset(path)
    n_frames = _n_frames(ds)
    if frame is not None and not 0 <= frame < n_frames:
        raise ArgumentError(f"frame={frame} is out of range for {path}, which has {n_frames} frame(s).")
    check_voxels(path, (n_frames, *_claimed_plane(ds)), max_voxels, what="pixel data")
    pixels = _decoded(ds, path)
    if n_frames > 1 and frame is not None:
        pixels = pixels[frame]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        colour, pixels, window = _values(pixels, ds, photometric, rgb, path)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error, OverflowError) as exc:
        # pydicom's LUT code on attributes that contradict each other (found by tests/test_fuzz_readers.py)
        raise ImageReadError(f"{path}: the pixel values cannot be mapped: its photometric interpretation, rescale "
                             f"or LUT attributes are inconsistent ({type(exc).__name__}: {str(exc)[:200]}). "
                             "Check the file with the software that wrote it (e.g. dciodvfy).") from exc
    array = checked_pixels(pixels, path)
    spacing, unit = _spacing(ds, array.ndim, path)
    meta = dicom_meta(ds, keep_identifiers=keep_identifiers)
    meta.update(format="DICOM", transfer_syntax=str(_transfer_syntax(ds).name), photometric=photometric,
                n_frames=n_frames, bit_depth=int(ds.get("BitsStored", 8)), spacing_unit=unit,
                rows=int(array.shape[-2]), columns=int(array.shape[-1]))
    if frame is not None:
        meta["frame"] = frame
    if colour and rgb == "keep":
        meta["channels"] = "RGB"
        spacing = (1.0,) + spacing[-2:]
    return MedicalImage(array, spacing=spacing, window=window, modality=str(ds.get("Modality", "OT") or "OT"),
                        meta=meta, source=path)


def _dataset(path: Path) -> Dataset:
    """The parsed file, with a transfer syntax set; ImageReadError when unreadable or without pixels."""
    try:
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:  # no 'DICM' preamble: may still be a bare DICOM data set
            ds = pydicom.dcmread(path, force=True)
        convert_all(ds)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, NotImplementedError,
            IndexError, struct.error) as exc:
        raise ImageReadError(f"{path}: cannot be parsed as DICOM ({type(exc).__name__}: {exc}). "
                             "The file may be truncated or not DICOM at all.") from exc
    if "SOPClassUID" not in ds and not any(k in ds for k in _PIXEL_KEYWORDS):
        raise ImageReadError(f"{path}: holds no readable DICOM data set (no SOP Class UID, no pixel data); "
                             "the file is truncated or not DICOM. Copy it again from the source.")
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        kind = UID(str(ds.SOPClassUID)).name
        raise ImageReadError(f"{path}: this DICOM file has no pixel data (it is a '{kind}' object), so there is "
                             "no image to read. Pick the image files of the series (e.g. CT, MR, CR, DX, SC).")
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        _guess_transfer_syntax(ds)
    return ds


def convert_all(ds: Dataset) -> None:
    """Convert every element now: pydicom parses values lazily, so a damaged element (an unknown VR, a bad
    length) would otherwise raise from whichever later line first touches it (found by fuzzing)."""
    for _ in ds.iterall():
        pass


def _guess_transfer_syntax(ds: Dataset) -> None:
    """Files without file meta: the encoding pydicom found while parsing is the transfer syntax."""
    if hasattr(ds, "original_encoding"):  # pydicom >= 3
        implicit, little = ds.original_encoding
    else:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                      ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _transfer_syntax(ds: Dataset) -> UID:
    return UID(str(ds.file_meta.TransferSyntaxUID))


def _n_frames(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _claimed_plane(ds: Dataset) -> tuple[int, int, int]:
    """Rows, Columns, Samples per Pixel as the header claims them (0 when unreadable: pydicom reports it)."""
    out = []
    for keyword, default in (("Rows", 0), ("Columns", 0), ("SamplesPerPixel", 1)):
        try:
            out.append(max(int(ds.get(keyword, default) or default), 0))
        except (TypeError, ValueError):
            out.append(default)
    return tuple(out)


def _decoded(ds: Dataset, path: Path) -> np.ndarray:
    """``ds.pixel_array``, or an ImageReadError naming the transfer syntax and the missing decoder."""
    syntax = _transfer_syntax(ds)
    if not syntax.is_transfer_syntax:
        raise ImageReadError(f"{path}: its Transfer Syntax UID {str(syntax)!r} is not a transfer syntax pydicom "
                             "knows (a private, mistyped or damaged value), so its pixel data cannot be decoded. "
                             "Convert the file with the software that wrote it (or dcmtk's dcmconv).")
    if get_decoder is not None and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError as exc:
            raise ImageReadError(f"{path}: pydicom has no decoder for transfer syntax {syntax.name} "
                                 f"({syntax}); convert the file (e.g. dcmtk's dcmdjpeg/dcmdrle).") from exc
        if not decoder.is_available:
            raise ImageReadError(_no_decoder_message(path, syntax, "no decoder for it is installed"))
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:
        raise ImageReadError(_no_decoder_message(path, syntax, f"decoding failed: {exc}")) from exc
    except (ValueError, AttributeError, KeyError, TypeError, EOFError, OSError, IndexError, StopIteration,
            struct.error, OverflowError) as exc:  # StopIteration: pydicom's RLE frame iterator
        raise ImageReadError(f"{path}: the pixel data cannot be decoded ({type(exc).__name__}: {exc}). "
                             "The file is truncated or its image attributes (Rows, Columns, Bits Allocated, "
                             "Number of Frames) do not match the pixel data.") from exc


def _no_decoder_message(path: Path, syntax: UID, why: str) -> str:
    options = " | ".join(f"pip install {p}" for p in decoder_packages(syntax))
    return (f"{path}: pixel data are compressed with transfer syntax '{syntax.name}' ({syntax}) and {why}. "
            f"Install a decoder that supports it: {options}; then read the file again.")


def _values(pixels: np.ndarray, ds: Dataset, photometric: str, rgb: str, path: Path):
    """(is colour, values after the modality LUT / colour conversion, default window)."""
    colour = photometric == "PALETTE COLOR" or int(ds.get("SamplesPerPixel", 1)) > 1
    if colour:
        top = 2.0 ** int(ds.get("BitsStored", 8)) - 1
        return True, _colour(pixels, ds, photometric, rgb, path), (top / 2.0, top)
    return False, *_grey(pixels, ds, photometric)


def _grey(stored: np.ndarray, ds: Dataset, photometric: str) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Modality LUT, then MONOCHROME1 inversion; returns the values and the default window."""
    lut_ds = _lut_view(ds)
    values = apply_modality_lut(stored, lut_ds)
    window = _default_window(lut_ds)
    if photometric == "MONOCHROME1":
        lo, hi = _output_range(lut_ds)
        values = (lo + hi) - np.asarray(values, dtype=np.float64)
        if window is not None:
            window = (lo + hi - window[0], window[1])
    return np.asarray(values), window


def _output_range(ds: Dataset) -> tuple[float, float]:
    """Smallest and largest modality-LUT output the stored bit depth allows (not the image content)."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1])
    mapped = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    return float(mapped.min()), float(mapped.max())


# Enhanced (multi-frame functional group) objects keep rescale, window and spacing in these macros.
_FUNCTIONAL_GROUPS = ("PixelValueTransformationSequence", "FrameVOILUTSequence", "PixelMeasuresSequence")
_VIEW_KEYWORDS = ("ModalityLUTSequence", "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter",
                  "WindowWidth", "VOILUTSequence", "VOILUTFunction", "BitsAllocated", "BitsStored",
                  "PixelRepresentation", "PhotometricInterpretation", "PixelSpacing", "ImagerPixelSpacing",
                  "SliceThickness", "SpacingBetweenSlices", "GridFrameOffsetVector")


def _lut_view(ds: Dataset) -> Dataset:
    """A small data set with the attributes that map and place pixels: the top-level ones, completed
    by the Shared Functional Groups of enhanced multi-frame objects (per-frame groups are not read)."""
    view = Dataset()
    view.file_meta = ds.file_meta
    shared = ds.get("SharedFunctionalGroupsSequence") or [Dataset()]
    items = [ds] + [item for macro in _FUNCTIONAL_GROUPS for item in (shared[0].get(macro) or [])]
    for source in items:
        for keyword in _VIEW_KEYWORDS:
            if keyword in source and keyword not in view:
                view.add(source[keyword])
    return view


def _default_window(ds: Dataset) -> tuple[float, float] | None:
    if "WindowCenter" in ds and "WindowWidth" in ds:
        return float(_first(ds.WindowCenter)), float(_first(ds.WindowWidth))
    voi = ds.get("VOILUTSequence")
    if voi:
        return _voi_lut_window(voi[0])
    return None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, pydicom.multival.MultiValue)) else value


def _voi_lut_window(item: Dataset) -> tuple[float, float]:
    """Linear window through the ramp of a VOI LUT: input values from the table's last minimum to its
    first maximum (PS3.3 C.11.2.1.1: LUT Descriptor = entries, first input value mapped, bits)."""
    n_entries, first_mapped, bits = (int(v) for v in item.LUTDescriptor)
    data = item.LUTData
    if isinstance(data, bytes):
        data = np.frombuffer(data, dtype=np.uint8 if bits <= 8 else "<u2")
    table = np.asarray(data, dtype=np.float64).ravel()[: n_entries or 65536]
    start = int(np.flatnonzero(table == table.min()).max()) if table[0] <= table[-1] else 0
    stop = int(np.flatnonzero(table == table.max()).min()) if table[0] <= table[-1] else table.size - 1
    if stop <= start:
        start, stop = 0, table.size - 1
    width = max(stop - start, 1)
    return first_mapped + start + width / 2.0, float(width)


def _colour(pixels: np.ndarray, ds: Dataset, photometric: str, rgb: str, path: Path) -> np.ndarray:
    """RGB from palette or YBR, then luminance or channels-first."""
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    elif photometric.startswith("YBR") and get_decoder is None:  # pydicom 2 returns YBR as stored
        from pydicom.pixel_data_handlers.util import convert_color_space

        pixels = convert_color_space(pixels, photometric, "RGB")
    if rgb == "gray":
        return rgb_to_gray(pixels)
    if pixels.ndim != 3:
        raise ArgumentError(f"rgb='keep' cannot keep colour for the multi-frame file {path}; "
                            "pick one frame (frame=) or use rgb='gray'.")
    return np.moveaxis(pixels, -1, 0)


def _spacing(ds: Dataset, ndim: int, path: Path) -> tuple[tuple[float, ...], str]:
    """(row, col) or (slice, row, col) spacing in mm, and ``"mm"`` or ``"pixel"`` when unknown.

    A Pixel Spacing that is not two finite positive numbers is treated as absent, with a warning: a
    zero, negative or NaN spacing would make every distance and area computed later wrong.
    """
    ds = _lut_view(ds)
    in_plane = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    row_col = _positive_pair(in_plane) if in_plane else None
    if in_plane and row_col is None:
        warnings.warn(f"{path}: Pixel Spacing {list(in_plane) if hasattr(in_plane, '__len__') else in_plane!r} is "
                      "not two positive numbers; it is ignored (spacing in pixels).", stacklevel=4)
    unit = "mm" if row_col else "pixel"
    row_col = row_col or (1.0, 1.0)
    if ndim == 2:
        return row_col, unit
    try:
        between = _slice_spacing(ds)
    except (TypeError, ValueError, IndexError):
        between = float("nan")
    if not (np.isfinite(between) and between > 0):
        warnings.warn(f"{path}: the slice spacing is not a positive number; using 1.", stacklevel=4)
        between = 1.0
    return (between,) + row_col, unit


def _positive_pair(value: Any) -> tuple[float, float] | None:
    try:
        pair = (float(value[0]), float(value[1]))
    except (TypeError, ValueError, IndexError):
        return None
    return pair if all(np.isfinite(v) and v > 0 for v in pair) else None


def _slice_spacing(ds: Dataset) -> float:
    if ds.get("SpacingBetweenSlices"):
        return abs(float(ds.SpacingBetweenSlices))
    offsets = ds.get("GridFrameOffsetVector")
    if offsets is not None and len(offsets) > 1:
        steps = np.diff(np.asarray(offsets, dtype=np.float64))
        if np.allclose(steps, steps[0]) and steps[0] != 0:
            return abs(float(steps[0]))
    if ds.get("SliceThickness"):
        return float(ds.SliceThickness)
    return 1.0
