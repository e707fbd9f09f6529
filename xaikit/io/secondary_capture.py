"""Write a :class:`MedicalImage` as a DICOM Secondary Capture object (pydicom).

2D images use the Secondary Capture Image Storage SOP class (1.2.840.10008.5.1.4.1.1.7), volumes the
Multi-frame Grayscale Word SC Image Storage class (1.2.840.10008.5.1.4.1.1.7.3). Pixels are stored as
16-bit unsigned integers; Rescale Slope/Intercept are written when the values are not already integers
in 0..65535, chosen so :func:`xaikit.io.read_image` returns them within half a quantization step
(``slope / 2``). Nothing random is needed: with ``uid_seed`` (and the default empty dates) the same call
writes the same bytes.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .. import __version__
from .._util import atomic_path
from ..errors import ArgumentError, ImageWriteError
from .image import MedicalImage

__all__ = ["write_dicom", "SECONDARY_CAPTURE", "MULTIFRAME_WORD_SC"]

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
_TOP = 65535


def write_dicom(
    image: MedicalImage | np.ndarray,
    path: str | os.PathLike,
    *,
    window: tuple[float, float] | None = None,
    photometric: str = "MONOCHROME2",
    rescale: tuple[float, float] | None = None,
    modality: str | None = None,
    patient_id: str = "",
    uid_seed: str | None = None,
    date: str = "",
    description: str = "",
) -> Path:
    """Write a 2D image or 3D volume as a DICOM secondary capture, atomically.

    Parameters
    ----------
    image : MedicalImage or numpy.ndarray
        Values in physical units (an array is wrapped with unit spacing).
    path : str or os.PathLike
        Destination ``.dcm`` file.
    window : (center, width), optional
        Written as Window Center/Width (default: ``image.window``).
    photometric : {"MONOCHROME2", "MONOCHROME1"}
        MONOCHROME1 stores inverted pixels (and window) so that reading the file gives back ``image``.
    rescale : (slope, intercept), optional
        Force this Rescale Slope/Intercept (stored = round((value - intercept) / slope)); by default
        none for integer data in 0..65535, else ``slope = (max - min) / 65535``, ``intercept = min``.
    modality : str, optional
        Default ``image.modality``.
    patient_id : str
        Patient ID (and name) to write; empty by default. Never write a real identifier into sample data.
    uid_seed : str, optional
        Derive Study/Series/SOP Instance/Frame of Reference UIDs from this text (reproducible files);
        random UIDs otherwise.
    date : str
        Study/Series/Content date ``YYYYMMDD``; empty by default (Type 2 attributes).
    description : str
        Series Description.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import numpy as np
    >>> img = MedicalImage(np.linspace(-1000, 1000, 64 * 64).reshape(64, 64), spacing=(0.5, 0.5))
    >>> write_dicom(img, "ct_like.dcm", uid_seed="demo")  # doctest: +SKIP
    """
    image = image if isinstance(image, MedicalImage) else MedicalImage(np.asarray(image))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ArgumentError(f"photometric={photometric!r} must be 'MONOCHROME2' or 'MONOCHROME1'.")
    if not np.isfinite(image.array).all():
        raise ArgumentError(f"{path}: the image holds {int((~np.isfinite(image.array)).sum())} NaN/infinite "
                            "values, which DICOM integer pixels cannot store; replace them (numpy.nan_to_num) first.")
    slope, intercept = _rescale(image.array, rescale)
    stored = _stored(image.array, slope, intercept)
    center, width = image.window if window is None else (float(window[0]), float(window[1]))
    if photometric == "MONOCHROME1":  # reader: value = lo + hi - (intercept + slope * stored)
        stored = _TOP - stored
        center = 2 * intercept + slope * _TOP - center
    ds = _dataset(image, modality or image.modality, uid_seed, patient_id, date, description)
    _set_pixels(ds, stored, photometric)
    ds.WindowCenter, ds.WindowWidth = _ds(center), _ds(width)
    if width < 1:  # LINEAR needs a width >= 1 (PS3.3 C.11.2.1.2.1); LINEAR_EXACT takes any width > 0
        ds.VOILUTFunction = "LINEAR_EXACT"
    if (slope, intercept) != (1.0, 0.0):
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds(slope), _ds(intercept), "US"
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    except OSError as exc:
        raise ImageWriteError(f"{path}: could not write the DICOM file ({exc}).") from exc
    return path


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters (DICOM DS), as precise as fits."""
    return pydicom.valuerep.format_number_as_ds(float(value))


def _rescale(values: np.ndarray, rescale: tuple[float, float] | None) -> tuple[float, float]:
    """(slope, intercept) mapping 0..65535 onto the values, both exactly as they read back from DS text."""
    lo, hi = float(values.min()), float(values.max())
    if rescale is not None:
        slope, intercept = float(_ds(rescale[0])), float(_ds(rescale[1]))
        if slope <= 0 or lo < intercept - slope / 2 or hi > intercept + slope * (_TOP + 0.5):
            raise ArgumentError(f"rescale={tuple(rescale)} cannot hold values in [{lo:.6g}, {hi:.6g}] in 16 bits "
                                "(stored = round((value - intercept) / slope) must lie in 0..65535); "
                                "choose a larger slope or another intercept, or rescale=None.")
        return slope, intercept
    integral = bool(np.array_equal(values, np.rint(values)))
    if integral and lo >= 0 and hi <= _TOP:
        return 1.0, 0.0
    intercept = float(_ds(lo))
    if hi == lo or (integral and hi - lo <= _TOP):
        return 1.0, intercept
    # Slightly widen the slope so DS rounding of slope and intercept cannot push the maximum past 65535.
    slope = float(_ds((hi - intercept) / (_TOP - 0.25)))
    return slope, intercept


def _stored(values: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    stored = np.rint((values.astype(np.float64) - intercept) / slope)
    return np.clip(stored, 0, _TOP).astype(np.uint16)


def _uid(seed: str | None, role: str) -> str:
    return str(generate_uid() if seed is None else generate_uid(entropy_srcs=[f"xaikit|{seed}|{role}"]))


def _dataset(image: MedicalImage, modality: str, seed: str | None, patient_id: str, date: str,
             description: str) -> Dataset:
    """Patient, study, series, equipment and SC modules (Type 2 attributes present, possibly empty)."""
    volume = image.ndim == 3
    sop_class = MULTIFRAME_WORD_SC if volume else SECONDARY_CAPTURE
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(seed, "instance")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(seed, "study"), _uid(seed, "series")
    ds.FrameOfReferenceUID = _uid(seed, "frame-of-reference")
    ds.PatientName = ds.PatientID = patient_id
    ds.PatientBirthDate = ds.PatientSex = ds.ReferringPhysicianName = ds.AccessionNumber = ""
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "" if not date else "000000"
    ds.Modality, ds.ConversionType, ds.SeriesDescription = modality or "OT", "WSD", description
    ds.PatientOrientation = ""
    ds.Manufacturer, ds.SoftwareVersions = "xaikit", _version()
    ds.BurnedInAnnotation = "NO"
    ds.PixelSpacing = [_ds(image.spacing[-2]), _ds(image.spacing[-1])]
    if volume:
        ds.SliceThickness = ds.SpacingBetweenSlices = _ds(image.spacing[0])
        ds.NumberOfFrames = image.shape[0]
        ds.FrameIncrementPointer = pydicom.tag.Tag("SliceLocationVector")
        ds.SliceLocationVector = [_ds(k * image.spacing[0]) for k in range(image.shape[0])]
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray, photometric: str) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.Rows, ds.Columns = int(stored.shape[-2]), int(stored.shape[-1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()


def _version() -> str:
    return __version__
